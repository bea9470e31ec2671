"""The settings' schema: what a model, a task, its data, a tokenizer and training can be told, as dataclasses with
defaults that run, each checking its own ranges (attnkit.config.fields says how they are read and how errors name
the key and line). A checkpoint's config.json holds them as JSON, so loading a model needs no code from the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from attnkit.config.fields import at_least, in_range
from attnkit.errors import AttnkitError

Arch = Literal["encoder", "decoder", "encoder-decoder"]
Activation = Literal["relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu", "geglu_tanh"]
Norm = Literal["layernorm", "rmsnorm"]
Positions = Literal["none", "sinusoidal", "learned", "relative", "learned+relative", "rotary", "alibi"]


@dataclass
class ModelConfig:
    """Every architecture choice of an attnkit Transformer. The defaults build a small pre-norm encoder."""

    arch: Arch = "encoder"
    vocab_size: int = 8000
    target_vocab_size: int | None = None  # encoder-decoder with its own target vocabulary; None shares vocab_size
    dim: int = 256  # d_model in the paper
    num_heads: int = 4  # h
    # grouped-query attention (Ainslie et al. 2023): key/value heads, each shared by num_heads / num_kv_heads query
    # heads (1: multi-query attention); None: one per query head, the paper's
    num_kv_heads: int | None = None
    head_size: int | None = None  # the width of one head; None: dim / num_heads (Gemma's is its own)
    ff_dim: int = 1024  # d_ff
    num_layers: int = 4  # N: encoder layers, or decoder layers for arch="decoder"
    num_decoder_layers: int | None = None  # encoder-decoder only; None means num_layers
    dropout: float = 0.1
    attention_dropout: float = 0.0
    token_dropout: float = 0.0  # in training, drop whole token embeddings with this probability (word dropout)
    activation: Activation = "gelu"
    norm: Norm = "layernorm"
    norm_eps: float = 1e-5
    norm_first: bool = True  # pre-norm (stable without warmup tricks); False is the paper's post-norm
    positions: Positions = "sinusoidal"
    max_positions: int = 512  # size of the learned position table; other schemes extrapolate beyond it
    # learned+relative (MPNet) adds both: a learned vector per position and the relative bias in the scores
    relative_buckets: int = 32
    relative_max_distance: int = 128
    rotary_base: float = 10000.0
    # rotary positions stretched for longer inputs than in pretraining: linear (every angle divided by rotary_factor)
    # or llama3 (Llama 3.1's: the low frequencies divided, the high kept, those between blended)
    rotary_scaling: Literal["none", "linear", "llama3"] = "none"
    rotary_factor: float = 1.0
    rotary_low_freq_factor: float = 1.0  # llama3: wavelengths over original_positions / this are divided
    rotary_high_freq_factor: float = 4.0  # llama3: wavelengths under original_positions / this are kept
    rotary_original_positions: int = 8192  # llama3: the context length of pretraining
    scale_embeddings: bool = True  # multiply token embeddings by sqrt(dim) (the paper): unit scale beside sinusoids
    embedding_norm: bool = False  # a norm right after the embeddings (BERT, BART)
    embedding_dim: int | None = None  # encoder: embeddings this wide, projected up to dim (ELECTRA); None: dim
    bias: bool = True  # biases in the attention and feed-forward projections
    qkv_bias: bool | None = None  # biases in the query, key and value projections; None: as `bias` (Qwen2: only these)
    attention_scale: float | None = None  # None is 1/sqrt(head_dim); T5 uses 1.0
    share_embeddings: bool = True  # encoder-decoder: source and target share one embedding table
    tie_output: bool = True  # the output projection reuses the target embedding matrix
    output_bias: bool = False
    output_scale: float = 1.0  # multiplies the decoder's last states before the output projection (T5: dim^-0.5)
    pad_id: int = 0
    decoder_start_id: int | None = None  # the first decoder input; None: the tokenizer's start token <s>
    segments: int = 0  # segment (token type) embeddings: BERT's 2 tell the first text of a pair from the second
    preset: str | None = None  # the Hugging Face family whose architecture this is (attnkit.interop.hf.PRESETS)

    def __post_init__(self) -> None:
        positive = ("vocab_size", "target_vocab_size", "dim", "num_heads", "ff_dim", "num_layers")
        at_least(1, "model", self, *positive, "num_decoder_layers", "max_positions", "embedding_dim")
        at_least(1, "model", self, "relative_buckets", "relative_max_distance", "num_kv_heads", "head_size")
        at_least(1, "model", self, "rotary_original_positions")
        in_range("model", self, "rotary_factor", 0, None, low_open=True)
        at_least(0, "model", self, "pad_id", "decoder_start_id", "segments")
        in_range("model", self, "norm_eps", 0, None, low_open=True)
        in_range("model", self, "rotary_base", 1, None, low_open=True)
        if self.segments and self.arch != "encoder":
            raise AttnkitError(f"model.segments ({self.segments}): only an encoder reads segments, not {self.arch!r}")
        if self.embedding_dim is not None and self.arch != "encoder":
            raise AttnkitError(f"model.embedding_dim ({self.embedding_dim}): only an encoder has it, not {self.arch!r}")
        if self.head_size is None and self.dim % self.num_heads:
            raise AttnkitError(f"model.dim ({self.dim}) must be divisible by model.num_heads ({self.num_heads})")
        if self.num_heads % self.kv_heads:
            raise AttnkitError(
                f"model.num_kv_heads ({self.num_kv_heads}) must divide model.num_heads ({self.num_heads}): each "
                "key/value head serves as many query heads"
            )
        if self.positions == "rotary" and self.head_dim % 2:
            raise AttnkitError(f"model.positions=rotary needs an even head width, not {self.head_dim}")
        if self.rotary_scaling == "llama3" and not self.rotary_low_freq_factor < self.rotary_high_freq_factor:
            raise AttnkitError(
                f"model.rotary_low_freq_factor ({self.rotary_low_freq_factor}) must be below "
                f"model.rotary_high_freq_factor ({self.rotary_high_freq_factor})"
            )
        if (
            self.arch == "encoder-decoder"
            and self.share_embeddings
            and self.target_vocab_size
            not in (
                None,
                self.vocab_size,
            )
        ):
            raise AttnkitError("model.share_embeddings needs target_vocab_size equal to vocab_size (or unset)")
        for name in ("dropout", "attention_dropout", "token_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise AttnkitError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.head_size if self.head_size is not None else self.dim // self.num_heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads: num_kv_heads, or one per query head."""
        return self.num_kv_heads if self.num_kv_heads is not None else self.num_heads

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def embedding_width(self) -> int:
        """The width of the embeddings (tokens, positions, segments), before any projection to dim."""
        return self.embedding_dim if self.embedding_dim is not None else self.dim

    @property
    def position_limit(self) -> int | None:
        """The longest sequence the positions allow: a learned table's size; None: any length."""
        return self.max_positions if self.positions in ("learned", "learned+relative") else None

    @property
    def decoder_layers(self) -> int:
        return self.num_decoder_layers if self.num_decoder_layers is not None else self.num_layers

    @property
    def output_vocab_size(self) -> int:
        return self.target_vocab_size if self.target_vocab_size is not None else self.vocab_size


# the architecture each task shape's models have (None: any); named here, so that a run's configuration is checked
# without importing a task (and PyTorch); tests/test_docs.py keeps it equal to each task's own `arch`
TASK_ARCHS: dict[str, str | None] = {
    "classify": "encoder",
    "tag": "encoder",
    "seq2seq": "encoder-decoder",
    "pretrain": None,
    "pair": "encoder",
    "regress": "encoder",
    "embed": "encoder",
}


@dataclass
class TaskConfig:
    """What the model is trained to do, and the options of that task shape."""

    name: str = "classify"  # a task shape of attnkit.tasks.TASKS (TASK_ARCHS)
    # classify, pair, regress, embed: average or maximum of the states, the first, the last (a decoder's), or a pooler
    # (the first, a dense layer, then tanh as BERT, RoBERTa and MPNet; ReLU as DistilBERT; GELU as ELECTRA); None: the
    # architecture's own (its model.preset family's, else last for a decoder, mean for an encoder; embed: the mean, or
    # the --init sentence-transformers folder's)
    pooling: Literal["mean", "max", "first", "last", "pooler", "pooler_relu", "pooler_gelu"] | None = None
    beam_size: int = 4  # seq2seq decoding; 1 is greedy
    length_penalty: float = 1.0  # seq2seq: hypotheses are ranked by log-probability / length ** length_penalty
    no_repeat_ngram: int = 0  # seq2seq: if n > 0, no n-gram occurs twice in an output
    chat: bool = False  # seq2seq on a language model: the source as the user's message through its chat template
    metric: str | None = None  # the dev metric that picks the best checkpoint; None: the task's main metric
    # tag: the encoder also reads each word's shape (lower, Title, UPPER, digits...), which an uncased
    # checkpoint's tokenizer drops (all-MiniLM-L6-v2 lowercases: proper nouns look like common ones)
    word_shapes: bool = False
    mask_fraction: float | None = None  # pretrain: share of tokens corrupted; None: 0.15 (masked LM), 0.3 (infilling)

    def __post_init__(self) -> None:
        if self.mask_fraction is not None and not 0 < self.mask_fraction < 1:
            raise AttnkitError(f"task.mask_fraction must be in (0, 1), not {self.mask_fraction}")
        at_least(1, "task", self, "beam_size")
        at_least(0, "task", self, "no_repeat_ngram")


@dataclass
class DataConfig:
    """Where the examples are and which columns hold what. Paths are relative to the working directory."""

    RENAMED: ClassVar[dict[str, str]] = {"max_target_length": "max_new_tokens"}  # old name -> new

    train: str | None = None
    dev: str | None = None
    test: str | None = None
    text_column: str = "text"  # classify and regress files (TSV, CSV, JSONL)
    label_column: str = "label"  # classify, pair: a label; regress: a number
    text_a_column: str = "text_a"  # pair (and regress of pairs): the first text and the second
    text_b_column: str = "text_b"
    negative_column: str = "negative"  # embed: a text that does not belong with text_a, where the file has the column
    source_column: str = "source"  # parallel files
    target_column: str = "target"
    words_column: str = "tokens"  # tag, from Parquet, Arrow or a datasets folder: a list of words and of tags per row
    tags_column: str = "tags"
    split: str | None = None  # data.train as a datasets DatasetDict folder: the split to train on (default: train)
    max_length: int = 256  # tokens of input kept (both texts of a pair together); longer inputs are truncated
    max_new_tokens: int = 256  # seq2seq: tokens of target kept in training, and the most tokens generated
    cache: str | None = None  # where the training data is tokenized to (default: OUT.corpus beside the output)
    dev_fraction: float | None = None  # without a dev file: hold out this share of the training file as dev
    test_fraction: float | None = None  # without a test file: hold out this share of the training file as test
    split_seed: int | None = None  # which examples those fractions hold out; None: train.seed

    def __post_init__(self) -> None:
        for name, file in (("dev_fraction", self.dev), ("test_fraction", self.test)):
            value = getattr(self, name)
            if value is not None and (file or not 0 < value < 1):
                raise AttnkitError(f"data.{name} must be in (0, 1) and is used only without a {name[:-9]} file")
        at_least(1, "data", self, "max_length", "max_new_tokens")
        at_least(0, "data", self, "split_seed")


@dataclass
class TokenizerConfig:
    """A subword tokenizer trained on the training data, or loaded from a tokenizer.json."""

    kind: Literal["bpe", "wordpiece", "unigram", "word"] = "bpe"  # word: whole words split on spaces
    vocab_size: int = 8000
    min_frequency: int = 2
    lowercase: bool = False
    path: str | None = None  # a tokenizers tokenizer.json to use instead of training one

    def __post_init__(self) -> None:
        at_least(1, "tokenizer", self, "vocab_size")
        at_least(0, "tokenizer", self, "min_frequency")


@dataclass
class LoraConfig:
    """LoRA: a pretrained checkpoint's linear layers stay frozen and learn a low-rank update (docs/lora.md)."""

    rank: int = 0  # the update's rank; 0: no adapters, every weight trains (full fine-tuning)
    alpha: float | None = None  # the update is scaled by alpha / rank; None: 2 * rank
    dropout: float = 0.0  # on the adapters' input
    targets: list[Literal["attention", "feed_forward"]] = field(default_factory=lambda: ["attention", "feed_forward"])

    def __post_init__(self) -> None:
        at_least(0, "train.lora", self, "rank")
        in_range("train.lora", self, "alpha", 0, None, low_open=True)
        in_range("train.lora", self, "dropout", 0, 1, high_open=True)
        if self.rank and not self.targets:
            raise AttnkitError("train.lora.targets: empty; name attention, feed_forward or both")

    @property
    def effective_alpha(self) -> float:
        return self.alpha if self.alpha is not None else 2.0 * self.rank


@dataclass
class TrainConfig:
    """The optimization: AdamW with warmup and a decay schedule, batches by token budget."""

    epochs: int = 10
    max_steps: int | None = None  # train this many optimizer steps, whatever epochs says (patience may stop sooner)
    max_minutes: float | None = None  # stop after this much wall time
    batch_tokens: int | None = None  # tokens (padding included) in one batch; None: 4,096, fewer for small data
    accumulate: int = 1  # batches per optimizer step
    lr: float = 5e-4
    schedule: Literal["linear", "cosine", "inverse_sqrt", "constant"] = "linear"
    warmup_steps: int | None = None  # None: 200, or a tenth of the run if that is shorter
    weight_decay: float = 0.01
    clip_norm: float | None = 1.0
    label_smoothing: float = 0.1  # the tasks that predict labels or tokens (not regress)
    precision: Literal["float32", "bfloat16", "float16"] = "float32"  # autocast; float16 with a gradient scaler
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps; auto: cuda if there is a GPU, else mps, else cpu
    strategy: Literal["ddp", "fsdp"] = "ddp"  # under torchrun: a copy of the model per process, or shards of it
    eval_every: int | None = None  # optimizer steps between dev evaluations; None: once per epoch
    eval_examples: int | None = None  # score only the first N dev examples during training (seq2seq is slow)
    patience: int | None = 5  # evaluations without improvement before stopping; None: never stop early
    nonfinite_limit: int = 5  # a step whose loss or gradient is not finite is skipped; this many in a row stop the run
    ema: float | None = None  # evaluate and save an exponential moving average of the weights (e.g. 0.999)
    log_every: int = 50
    seed: int = 1
    init: str | None = None  # start from this checkpoint (attnkit or Hugging Face directory) and fine-tune it
    layer_decay: float = 1.0  # with init: layer i of N learns at lr * layer_decay ** (N - i), embeddings lowest
    freeze_embeddings: bool = False  # with init: keep the token and position embeddings as they are
    trust_pickle: bool = False  # with init: allow a pytorch_model.bin (unpickling can run code)
    adapter: str | None = None  # with init: a PEFT LoRA adapter folder for it, merged into it before training
    lora: LoraConfig = field(default_factory=LoraConfig)  # with init: train LoRA adapters and the head alone

    def __post_init__(self) -> None:
        at_least(1, "train", self, "epochs", "max_steps", "batch_tokens", "accumulate", "eval_every")
        at_least(1, "train", self, "eval_examples", "patience", "nonfinite_limit", "log_every")
        at_least(0, "train", self, "warmup_steps")
        in_range("train", self, "max_minutes", 0, None, low_open=True)
        in_range("train", self, "lr", 0, None)
        in_range("train", self, "weight_decay", 0, None)
        in_range("train", self, "clip_norm", 0, None, low_open=True)
        in_range("train", self, "label_smoothing", 0, 1, high_open=True)
        in_range("train", self, "ema", 0, 1, low_open=True, high_open=True)
        in_range("train", self, "layer_decay", 0, 1, low_open=True)
        in_range("train", self, "seed", 0, 2**32 - 1)  # what numpy's generator takes
