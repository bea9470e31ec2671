"""The training loop: schedules, learning, repeatability, exact resume, early stopping, the output directory."""

import errno
import json
import re
import warnings
from pathlib import Path

import pytest
import safetensors.torch
import torch

from attnkit import RunConfig
from attnkit.config import TrainConfig
from attnkit.errors import AttnkitError, AttnkitWarning
from attnkit.inference.pipeline import Pipeline
from attnkit.tasks import TASKS
from attnkit.tasks.classify import ClassifyTask
from attnkit.training import records
from attnkit.training.loop import train
from attnkit.training.optim import learning_rate
from attnkit.training.plan import MIN_BATCHES, plan_run
from tests.conftest import TINY, copy_pairs, run_config, sentiment_rows, tagging_sentences, write_conll, write_tsv


def test_warmup_then_schedules():
    config = TrainConfig(lr=1.0, warmup_steps=10)
    assert learning_rate(config, 0, 100, config.warmup_steps) == pytest.approx(0.1)
    assert learning_rate(config, 9, 100, config.warmup_steps) == pytest.approx(1.0)
    assert learning_rate(config, 55, 100, config.warmup_steps) == pytest.approx(
        0.5
    )  # linear: halfway through the decay
    assert learning_rate(config, 100, 100, config.warmup_steps) == 0.0
    config.schedule = "cosine"
    assert learning_rate(config, 55, 100, config.warmup_steps) == pytest.approx(0.5)
    assert learning_rate(config, 100, 100, config.warmup_steps) == pytest.approx(0.0)
    config.schedule = "inverse_sqrt"
    assert learning_rate(config, 39, 100, config.warmup_steps) == pytest.approx(0.5)  # sqrt(10 / 40)
    config.schedule = "constant"
    assert learning_rate(config, 99, 100, config.warmup_steps) == 1.0


def test_classifier_learns_and_keeps_its_best_checkpoint(sentiment_files, tmp_path):
    summary = train(run_config(sentiment_files, tmp_path / "out", "classify", "train.epochs=15"))
    assert summary["dev"]["accuracy"] == 1.0
    metrics, _, _ = Pipeline.load(tmp_path / "out").evaluate(sentiment_files["dev"])
    assert metrics["accuracy"] == summary["dev"]["accuracy"]  # the saved model is the best one
    records = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records) and any("dev" in r for r in records)
    assert list((tmp_path / "out" / "tensorboard").iterdir())


def weights(path: Path) -> dict:
    return safetensors.torch.load_file(str(path / "trainer_state" / "model.safetensors"))


def test_same_seed_gives_the_same_model(sentiment_files, tmp_path):
    train(run_config(sentiment_files, tmp_path / "a", "classify", "train.max_steps=12", "model.dropout=0.1"))
    train(run_config(sentiment_files, tmp_path / "b", "classify", "train.max_steps=12", "model.dropout=0.1"))
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def interrupt_at_batch(batch: int, monkeypatch, config: RunConfig) -> None:
    """Train until the loss of batch number `batch` (from 1) is asked for, then press Ctrl-C."""
    calls = {"n": 0}
    real_loss = ClassifyTask.loss

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == batch:
            raise KeyboardInterrupt
        return real_loss(self, *args)

    monkeypatch.setattr(ClassifyTask, "loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(ClassifyTask, "loss", real_loss)


def test_resume_continues_exactly(sentiment_files, tmp_path, monkeypatch):
    settings = ("train.max_steps=14", "model.dropout=0.1", "train.eval_every=4", "train.accumulate=2")
    train(run_config(sentiment_files, tmp_path / "whole", "classify", *settings))
    # batch 19 is in the 10th step (two batches a step): the interrupt saves the state of step 9

    interrupt_at_batch(19, monkeypatch, run_config(sentiment_files, tmp_path / "split", "classify", *settings))
    state = json.loads((tmp_path / "split" / "trainer_state" / "state.json").read_text())
    assert state["progress"]["step"] == 9
    summary = train(run_config(sentiment_files, tmp_path / "split", "classify", *settings), resume=True)
    assert summary["steps"] == 14
    whole, split = weights(tmp_path / "whole"), weights(tmp_path / "split")
    assert all(torch.equal(whole[k], split[k]) for k in whole)


def test_a_full_disk_stops_the_run_and_resume_ends_it_exactly(sentiment_files, tmp_path, monkeypatch):
    settings = ("train.max_steps=8", "train.eval_every=2", "train.patience=null", "model.dropout=0.1")
    train(run_config(sentiment_files, tmp_path / "whole", "classify", *settings))
    real, calls = safetensors.torch.save_file, {"n": 0}

    def full_at_the_third(tensors, filename, *args, **kwargs):  # the state of step 0, 2, 4; the disk fills at 6
        calls["n"] += filename.endswith("optimizer.safetensors")
        if calls["n"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", full_at_the_third)
    state = tmp_path / "split" / "trainer_state"
    with pytest.raises(AttnkitError, match=rf"^{state}: could not be written \(No space left on device\); the prev"):
        train(run_config(sentiment_files, tmp_path / "split", "classify", *settings))
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    assert json.loads((state / "state.json").read_text())["progress"]["step"] == 4
    assert train(run_config(sentiment_files, tmp_path / "split", "classify", *settings), resume=True)["steps"] == 8
    whole, split = weights(tmp_path / "whole"), weights(tmp_path / "split")
    assert all(torch.equal(whole[k], split[k]) for k in whole)


def test_patience_stops_training_early(sentiment_files, tmp_path):
    summary = train(
        run_config(
            sentiment_files,
            tmp_path / "out",
            "classify",
            "train.lr=0.0",
            "train.eval_every=2",
            "train.patience=2",
            "train.epochs=50",
        )
    )
    # evaluations at 2 (best), 4 (inside the 5 warmup steps: not counted), 6 and 8 (no better): stop
    assert summary["steps"] == 8


def test_existing_output_needs_resume_or_overwrite(sentiment_files, tmp_path):
    config = run_config(sentiment_files, tmp_path / "out", "classify", "train.max_steps=2")
    train(config)
    with pytest.raises(AttnkitError, match="already exists; pass --resume to continue it or --overwrite"):
        train(config)
    train(config, overwrite=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AttnkitError, match="empty: nothing to resume"):
        train(run_config(sentiment_files, tmp_path / "empty", "classify"), resume=True)


def test_an_out_naming_a_users_folder_is_refused_even_with_overwrite(sentiment_files, tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(AttnkitError, match="home: exists and is not an attnkit checkpoint; refusing to overwrite"):
        train(run_config(sentiment_files, tmp_path / "home", "classify", "train.max_steps=2"), overwrite=True)
    assert [p.name for p in (tmp_path / "home").iterdir()] == ["notes.txt"]
    assert (tmp_path / "home" / "notes.txt").read_text() == "mine"


def test_resume_before_the_output_exists_starts_the_run(sentiment_files, tmp_path, capsys):
    summary = train(run_config(sentiment_files, tmp_path / "new", "classify", "train.max_steps=2"), resume=True)
    assert summary["steps"] == 2
    assert f"nothing to resume: {tmp_path / 'new'} does not exist yet; starting the run" in capsys.readouterr().err


def test_bad_dev_label_fails_before_anything_is_written(sentiment_files, tmp_path):
    dev = sentiment_files["dev"]
    dev.write_text(dev.read_text() + "meh\tneither happy nor sad\n")
    with pytest.raises(AttnkitError, match=rf"{dev}:42: label 'meh' never seen in training"):
        train(run_config(sentiment_files, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_resuming_with_other_training_data_says_so(sentiment_files, tmp_path):
    train(run_config(sentiment_files, tmp_path / "out", "classify", "train.max_steps=2"))
    other = write_tsv(tmp_path / "other.tsv", ("label", "text"), [("meh", "so so"), ("pos", "happy")])
    dev = write_tsv(tmp_path / "dev.tsv", ("label", "text"), [("meh", "so so")])
    files = {"train": other, "dev": dev}
    message = rf"{dev}:2: label 'meh' never seen in training .*; the run being resumed learned from other data \("
    with pytest.raises(AttnkitError, match=message):
        train(run_config(files, tmp_path / "out", "classify", "train.max_steps=4"), resume=True)


def test_a_run_cut_by_its_time_limit_says_so(sentiment_files, tmp_path, capsys):
    from attnkit.apps.cli import main

    args = ["train", "--train", sentiment_files["train"], "--out", tmp_path / "out", "--max-minutes", "0.0001"]
    assert main([str(a) for a in [*args, *(x for s in TINY for x in ("--set", s))]]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r"stopped early, at step \d+ of \d+, by train\.max_minutes \(0\.0001\): .*", last), last


@pytest.mark.parametrize(("precision", "dtype"), [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_training_computes_in_the_precision_set(sentiment_files, tmp_path, monkeypatch, precision, dtype):
    """Every linear layer of the model gives outputs of the run's precision while it trains; the weights that
    are saved stay float32 (autocast, not a bfloat16 copy of the model)."""
    seen: set[torch.dtype] = set()
    task = TASKS["classify"]
    build = task.build_model

    def build_and_watch(self):
        model = build(self)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(lambda m, _, output: seen.add(output.dtype) if m.training else None)
        return model

    monkeypatch.setattr(task, "build_model", build_and_watch)
    settings = (f"train.precision={precision}", "train.max_steps=3")
    train(run_config(sentiment_files, tmp_path / "out", "classify", *settings))
    assert seen == {dtype}
    assert {w.dtype for w in weights(tmp_path / "out").values()} == {torch.float32}


def held_out_split(files: dict, out: Path, *extra: str) -> dict[str, list[str]]:
    """The texts of the examples a run with dev and test fractions of 0.1 and 0.2 trains on, scores as dev and
    scores as test (told apart by their sizes: 140, 20 and 40 of the 200 rows)."""
    task = TASKS["classify"]
    fit, metrics = task.fit, task.metrics
    seen: dict[str, list[str]] = {}

    def fit_and_record(self, examples):
        examples = list(examples)  # a stream
        seen["train"] = sorted(e.text for e in examples)
        return fit(self, examples)

    def metrics_and_record(self, predictions, examples):
        seen[{20: "dev", 40: "test"}[len(examples)]] = sorted(e.text for e in examples)
        return metrics(self, predictions, examples)

    settings = ("data.dev=null", "data.dev_fraction=0.1", "data.test_fraction=0.2", "train.max_steps=2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(task, "fit", fit_and_record)
        patch.setattr(task, "metrics", metrics_and_record)
        summary = train(run_config(files, out, "classify", *settings, *extra))
    assert set(summary) >= {"dev", "test"}
    return seen


def test_fractions_hold_out_dev_and_test_from_one_file(sentiment_files, tmp_path):
    split = held_out_split(sentiment_files, tmp_path / "a")
    assert (len(split["train"]), len(split["dev"]), len(split["test"])) == (140, 20, 40)
    every_row = sorted(text for _, text in sentiment_rows(200, 1))  # the rows of sentiment_files["train"]
    assert sorted(split["train"] + split["dev"] + split["test"]) == every_row  # each row in exactly one part
    assert held_out_split(sentiment_files, tmp_path / "b") == split  # the same seed, the same split
    assert held_out_split(sentiment_files, tmp_path / "c", "train.seed=2") != split
    # another training seed on the same split: its dev and test are the same examples
    other = held_out_split(sentiment_files, tmp_path / "d", "train.seed=2", "data.split_seed=1")
    assert (other["dev"], other["test"]) == (split["dev"], split["test"])


def test_fraction_beside_a_dev_file_is_refused(sentiment_files, tmp_path):
    with pytest.raises(
        AttnkitError, match="data.dev_fraction must be in \\(0, 1\\) and is used only without a dev file"
    ):
        run_config(sentiment_files, tmp_path / "out", "classify", "data.dev_fraction=0.1")


def test_ema_weights_are_what_is_saved_and_resume_exactly(sentiment_files, tmp_path, monkeypatch):
    settings = ("train.max_steps=10", "model.dropout=0.1", "train.eval_every=4", "train.ema=0.9")
    train(run_config(sentiment_files, tmp_path / "whole", "classify", *settings))
    best = safetensors.torch.load_file(str(tmp_path / "whole" / "model.safetensors"))
    last = weights(tmp_path / "whole")
    assert not torch.equal(best["head.weight"], last["head.weight"])  # the average, not the raw weights

    interrupt_at_batch(7, monkeypatch, run_config(sentiment_files, tmp_path / "split", "classify", *settings))
    train(run_config(sentiment_files, tmp_path / "split", "classify", *settings), resume=True)
    split = safetensors.torch.load_file(str(tmp_path / "split" / "model.safetensors"))
    assert all(torch.equal(best[k], split[k]) for k in best)


SMALL_DATA = {
    "classify": lambda path, n, seed: write_tsv(path.with_suffix(".tsv"), ("label", "text"), sentiment_rows(n, seed)),
    "tag": lambda path, n, seed: write_conll(path.with_suffix(".conll"), tagging_sentences(n, seed)),
    "seq2seq": lambda path, n, seed: write_tsv(path.with_suffix(".tsv"), ("source", "target"), copy_pairs(n, seed)),
}


@pytest.mark.parametrize("task", ["classify", "tag", "seq2seq"])
def test_every_default_learns_300_examples(task, tmp_path):
    files = {
        split: SMALL_DATA[task](tmp_path / split, n, seed) for split, n, seed in (("train", 300, 1), ("dev", 60, 2))
    }
    overrides = [f"task.name={task}", f"data.train={files['train']}", f"data.dev={files['dev']}", f"out={tmp_path}/m"]
    summary = train(RunConfig.from_values({}, "test", overrides), quiet=True)
    assert summary["dev"][{"seq2seq": "bleu"}.get(task, "accuracy")] >= {"seq2seq": 95.0}.get(task, 0.98)


def test_small_data_gets_smaller_batches_and_a_shorter_warmup():
    plan = plan_run(TrainConfig(), [10] * 300)  # 3,000 tokens: under one batch of the default 4,096
    assert plan.batch_tokens == 3000 // MIN_BATCHES and plan.steps_per_epoch >= MIN_BATCHES
    assert plan.total_steps == 10 * plan.steps_per_epoch and plan.warmup_steps == plan.total_steps // 10
    lopsided = plan_run(TrainConfig(), [10] * 300 + [1000])  # one long example is a batch of its own
    assert lopsided.batch_tokens == 4000 // MIN_BATCHES  # not raised to the long example's 1,000 (4 batches)
    assert lopsided.steps_per_epoch == 300 // (250 // 10) + 1
    big = plan_run(TrainConfig(), [10] * 100_000)
    assert big.batch_tokens == 4096 and big.warmup_steps == 200 and big.eval_every is None
    given = plan_run(TrainConfig(batch_tokens=4096, warmup_steps=200), [10] * 300)  # settings given are used as given
    assert given.batch_tokens == 4096 and given.warmup_steps == 200 and given.steps_per_epoch == 1


def test_max_steps_wins_over_epochs(sentiment_files, tmp_path):
    settings = ("train.epochs=1", "train.max_steps=40", "train.patience=null")
    summary = train(run_config(sentiment_files, tmp_path / "out", "classify", *settings))
    assert summary["steps"] == 40 and summary["epochs"] > 1
    assert plan_run(TrainConfig(epochs=1, max_steps=40, eval_every=None), [10] * 300).eval_every == 40 // 4


def test_off_a_terminal_progress_is_a_line_with_the_loss(sentiment_files, tmp_path, capsys):
    train(run_config(sentiment_files, tmp_path / "out", "classify", "train.max_steps=10", "train.patience=null"))
    err = capsys.readouterr().err
    assert "200 training examples in batches of up to 512 tokens" in err  # as TINY sets it
    assert "hint: 200 examples are few for a Transformer from scratch; fine-tuning a pretrained checkpoint" in err
    assert "step 5/10  epoch 1  loss " in err and "step 10/10  epoch 2" in err  # 4 steps an epoch


def test_resume_says_where_it_resumes(sentiment_files, tmp_path, monkeypatch, capsys):
    settings = ("train.max_steps=8", "train.eval_every=4")
    interrupt_at_batch(7, monkeypatch, run_config(sentiment_files, tmp_path / "out", "classify", *settings))
    capsys.readouterr()
    train(run_config(sentiment_files, tmp_path / "out", "classify", *settings), resume=True)
    assert f"resuming {tmp_path / 'out'} at step 6 of 8" in capsys.readouterr().err


def test_resume_with_another_plan_says_what_changed(sentiment_files, tmp_path, monkeypatch, capsys):
    settings = ("train.patience=null", "train.eval_every=4")
    interrupt_at_batch(
        7, monkeypatch, run_config(sentiment_files, tmp_path / "out", "classify", *settings, "train.max_steps=8")
    )
    capsys.readouterr()
    train(run_config(sentiment_files, tmp_path / "out", "classify", *settings, "train.max_steps=12"), resume=True)
    assert "the run's plan differs from the one it was started with (total_steps 8 -> 12" in capsys.readouterr().err


def test_resume_warns_of_each_model_setting_it_ignores(sentiment_files, tmp_path):
    train(run_config(sentiment_files, tmp_path / "out", "classify", "train.max_steps=2"))
    changed = run_config(sentiment_files, tmp_path / "out", "classify", "train.max_steps=3", "model.num_heads=4")
    with pytest.warns(AttnkitWarning) as caught:
        summary = train(changed, resume=True)
    (message,) = [str(w.message) for w in caught]
    assert "ignores model.num_heads=4 (it has 2)" in message and summary["steps"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same settings: nothing to say
        train(run_config(sentiment_files, tmp_path / "out", "classify", "train.max_steps=4"), resume=True)


def test_resuming_a_finished_run_trains_no_further(sentiment_files, tmp_path):
    config = run_config(sentiment_files, tmp_path / "out", "classify", "train.max_steps=6")
    train(config)
    assert train(config, resume=True)["steps"] == 6


def test_accumulated_batches_give_the_gradient_of_one_batch_of_the_same_examples(tmp_path, monkeypatch):
    """Four short and two long examples: one step of two accumulated batches (4 + 2 examples) and one step of a
    single batch of all six see the same gradient, the mean over the six, not the mean of two batch means."""
    short = [("good", "happy red green"), ("bad", "sad red green"), ("good", "happy blue red"), ("bad", "sad blue red")]
    long = [("good", "happy red green blue small large quick slow"), ("bad", "sad red green blue small large quick")]
    files = {"train": write_tsv(tmp_path / "train.tsv", ("label", "text"), short + long), "dev": None}
    seen: list[list[torch.Tensor]] = []
    step = torch.optim.AdamW.step

    def recording_step(optimizer, *args, **kwargs):
        seen.append([p.grad.clone() for group in optimizer.param_groups for p in group["params"]])
        return step(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    common = ("tokenizer.kind=word", "train.epochs=1", "data.dev=null", "train.clip_norm=null", "train.patience=null")
    # words plus <s> and </s>: 5 tokens for a short example, 10 for a long one; batches cost count x longest
    train(run_config(files, tmp_path / "two", "classify", *common, "train.batch_tokens=20", "train.accumulate=2"))
    train(run_config(files, tmp_path / "one", "classify", *common, "train.batch_tokens=60"))
    assert len(seen) == 2
    for accumulated, whole in zip(*seen):
        assert torch.allclose(accumulated, whole, rtol=1e-5, atol=1e-7)


def poison_batches(batches: set[int], monkeypatch) -> None:
    """The loss of the given batches (numbered from 1) becomes NaN, and so do its gradients."""
    calls = {"n": 0}
    real_loss = ClassifyTask.loss

    def poisoned(self, *args):
        calls["n"] += 1
        loss, count = real_loss(self, *args)
        return (loss * float("nan"), count) if calls["n"] in batches else (loss, count)

    monkeypatch.setattr(ClassifyTask, "loss", poisoned)


def test_a_step_with_a_nan_loss_is_skipped_with_a_warning(sentiment_files, tmp_path, monkeypatch, capsys):
    poison_batches({3, 4}, monkeypatch)
    summary = train(
        run_config(sentiment_files, tmp_path / "out", "classify", "train.max_steps=6", "train.patience=null")
    )
    assert summary["steps"] == 6
    err = capsys.readouterr().err
    assert "warning: step 3: the loss is not finite; the step is skipped (1 in a row)" in err
    assert "warning: step 4: the loss is not finite; the step is skipped (2 in a row)" in err
    assert all(torch.isfinite(t).all() for t in weights(tmp_path / "out").values())
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert all(entry["loss"] == entry["loss"] for entry in log if "loss" in entry)  # no NaN in the logged loss


def test_a_skipped_step_leaves_the_weights_as_they_were(sentiment_files, tmp_path, monkeypatch):
    settings = ("train.patience=null", "train.eval_every=1", "train.schedule=constant", "train.warmup_steps=1")
    train(run_config(sentiment_files, tmp_path / "two", "classify", "train.max_steps=2", *settings))
    poison_batches({3}, monkeypatch)
    train(run_config(sentiment_files, tmp_path / "three", "classify", "train.max_steps=3", *settings))
    two, three = weights(tmp_path / "two"), weights(tmp_path / "three")
    assert all(torch.equal(two[k], three[k]) for k in two)


def test_nan_losses_in_a_row_stop_the_run_and_say_what_is_saved(sentiment_files, tmp_path, monkeypatch, capsys):
    from attnkit.apps.cli import main

    poison_batches(set(range(5, 100)), monkeypatch)
    out = tmp_path / "out"
    args = ["train", "--task", "classify", "--train", str(sentiment_files["train"]), "--out", str(out)]
    settings = [*TINY, "train.eval_every=4", "train.nonfinite_limit=3", "train.epochs=9"]
    assert main(args + [word for setting in settings for word in ("--set", setting)]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error == (
        "attnkit: error: step 7: the loss was not finite at 3 steps in a row (train.nonfinite_limit), so the run "
        f"stopped; {out} holds step 4 (--resume continues from it). Lower train.lr, or train in float32 or "
        "bfloat16 instead of float16"
    )
    assert json.loads((out / "trainer_state" / "state.json").read_text())["progress"]["step"] == 4


def test_nonfinite_limit_must_be_positive():
    with pytest.raises(AttnkitError, match="train.nonfinite_limit must be at least 1, got 0"):
        RunConfig.from_values({}, "test", ["train.nonfinite_limit=0"])


def test_nan_losses_from_the_start_name_the_state_of_step_0(sentiment_files, tmp_path, monkeypatch):
    poison_batches(set(range(1, 100)), monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(AttnkitError, match=rf"so the run stopped; {out} holds step 0 \(--resume continues from it\)"):
        train(run_config(sentiment_files, out, "classify", "train.nonfinite_limit=2", "train.max_steps=9"))
    assert json.loads((out / "trainer_state" / "state.json").read_text())["progress"]["step"] == 0


def test_a_run_without_a_bar_says_where_it_is_at_least_every_30_seconds(sentiment_files, tmp_path, capsys, monkeypatch):
    settings = ("train.epochs=1", "train.max_steps=6", "train.patience=null", "train.log_every=1000")
    train(run_config(sentiment_files, tmp_path / "fast", "classify", *settings), quiet=True)
    assert capsys.readouterr().err == ""  # quiet, and done before a line was due
    monkeypatch.setattr(records, "HEARTBEAT_SECONDS", 0.0)  # every step is 30 s after the last line
    train(run_config(sentiment_files, tmp_path / "slow", "classify", *settings), quiet=True)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("  ")[0] for line in lines] == [f"step {n}/6" for n in range(1, 7)]
