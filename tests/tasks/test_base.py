"""What every task shape does alike: batches padded with the tokenizer's own padding id."""

import numpy as np
import pytest
from tokenizers import Tokenizer as Backend
from tokenizers import models, pre_tokenizers

from attnkit.config import DataConfig, ModelConfig, TaskConfig
from attnkit.data.readers import Labelled, Pair, Tagged
from attnkit.data.token_files import Blocks
from attnkit.data.tokenizer import Tokenizer
from attnkit.tasks import make_task


def bart_numbered_tokenizer() -> Tokenizer:
    """Whole words, with the special tokens numbered as BART's: <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> 4."""
    vocabulary = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "red", "green", "blue"]
    backend = Backend(models.WordLevel({token: i for i, token in enumerate(vocabulary)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return Tokenizer(backend)


SHORT_AND_LONG = {  # two examples of different lengths, so that the shorter one is padded
    "classify": [Labelled("red", "a", 1), Labelled("red green blue", "b", 2)],
    "tag": [Tagged(["red"], ["A"], 1), Tagged(["red", "green", "blue"], ["A", "B", "A"], 3)],
    "seq2seq": [Pair("red", "blue", 1), Pair("red green blue", "blue green red", 2)],
    "pretrain": list(Blocks(np.arange(5, 10, dtype=np.uint16), 3)),  # blocks [5, 6, 7] and [8, 9]
}
ID_FIELDS = {"classify": ["ids"], "tag": ["ids"], "seq2seq": ["source", "target"], "pretrain": ["ids"]}


@pytest.mark.parametrize("name", ["classify", "tag", "seq2seq", "pretrain"])
def test_batches_are_padded_with_the_tokenizers_padding_id(name):
    tokenizer = bart_numbered_tokenizer()
    assert tokenizer.pad_id == 1
    state = {"classify": {"labels": ["a", "b"]}, "tag": {"tags": ["A", "B"]}}.get(name)
    task = make_task(TaskConfig(name=name), DataConfig(), tokenizer, ModelConfig(), state)
    batch = task.collate(task.encode(SHORT_AND_LONG[name], training=False))
    for field in ID_FIELDS[name]:
        padded = ~batch[f"{field}_mask" if name == "seq2seq" else "mask"]
        assert padded.any() and (batch[field][padded] == tokenizer.pad_id).all()
