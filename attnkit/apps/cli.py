"""The `attnkit` command: each subcommand reads its flags and calls one public function of attnkit (train, pretrain,
Pipeline, export, serve, ...). A user's mistake exits with code 2 and one line; a warning is one line too."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
import warnings
from pathlib import Path

from attnkit.errors import AttnkitError, AttnkitWarning, install

if typing.TYPE_CHECKING:  # the commands import what they run when they run: --help stays fast
    from attnkit.config import DataConfig
    from attnkit.inference.pipeline import Pipeline

Commands = argparse._SubParsersAction  # what build_parser hands each command's parser function

# flags that are shorthands for --set KEY=VALUE
SHORTHANDS = {
    "task": "task.name",
    "train": "data.train",
    "text": "data.train",
    "arch": "model.arch",
    "dev": "data.dev",
    "test": "data.test",
    "out": "out",
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "max_minutes": "train.max_minutes",
    "init": "train.init",
    "adapter": "train.adapter",
    "lora": "train.lora.rank",
    "preset": "model.preset",
    "device": "train.device",
}
DEVICE_HELP = "auto (default: cuda if there is a GPU, else mps, else cpu), cpu, cuda, cuda:N or mps"
ENGINE_HELP = (
    "what runs the model: torch (attnkit's own), ct2 (CTranslate2, the ct2 extra: faster on the CPU), or auto "
    "(default: ct2 for a folder written by export --ct2, else torch)"
)
INT8_HELP = (
    "int8 on the CPU, about 2-3x faster: CTranslate2's where the ct2 extra is installed and runs the model (as "
    "accurate as float32), else attnkit's own (a little less accurate; --engine torch asks for it); the command "
    "says which (docs/benchmarks.md)"
)
# named here, so that building the parser reads no task, family or engine module; tests/test_docs.py keeps them
# equal to attnkit.tasks.TASKS, attnkit.interop.hf.FAMILIES, Pipeline's ENGINES and CTranslate2's QUANTIZATIONS
ENGINES = ("auto", "torch", "ct2")
QUANTIZATIONS = ("float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16", "bfloat16")
ANY_MODEL = "a model: an attnkit checkpoint, a Hugging Face folder, or a GGUF file (or a folder with one)"
TRAINED = "a trained model: an attnkit run, or a Hugging Face *ForSequenceClassification or *ForTokenClassification"
TASK_HELP = "the task shape: classify, tag, seq2seq, pair, regress or embed (docs/configuration.md)"
PRESET_HELP = (
    "bert, roberta, xlm-roberta, distilbert, mpnet, electra, bart, marian, t5, gpt2, llama, mistral, qwen2 or gemma: "
    "that Hugging Face family's architecture, so that the model exports"
)


def _run_config(args: argparse.Namespace, *fixed: str):
    from attnkit.config import read_yaml
    from attnkit.training.run import RunConfig

    given = [
        f"{key}={getattr(args, flag)}" for flag, key in SHORTHANDS.items() if getattr(args, flag, None) is not None
    ]
    overrides = [*fixed, *given, *(args.set or [])]
    if getattr(args, "trust_pickle", False):
        overrides.append("train.trust_pickle=true")
    values = read_yaml(Path(args.config)) if args.config else {}
    return RunConfig.from_values(values, args.config or "command line", overrides)


def _train(args: argparse.Namespace) -> None:
    run = _run_config(args)  # a configuration error answers before PyTorch is imported
    from attnkit.training.loop import train

    summary = train(run, resume=args.resume, overwrite=args.overwrite)
    _print_summary(args, run.out, summary)


def _train_command(commands: Commands) -> None:
    train = commands.add_parser("train", help="train a model on labelled data (YAML config and/or flags)")
    train.add_argument("config", nargs="?", help="run configuration (YAML); flags and --set override it")
    train.add_argument("--task", help=TASK_HELP)
    train.add_argument("--train", metavar="FILE", help="training data")
    train.add_argument("--init", metavar="DIR", help="fine-tune this checkpoint (attnkit or Hugging Face directory)")
    train.add_argument("--trust-pickle", action="store_true", help="with --init: allow a pytorch_model.bin")
    train.add_argument(
        "--lora",
        type=int,
        metavar="RANK",
        help="with --init: train LoRA adapters of this rank and the task's head, the checkpoint's weights frozen "
        "(docs/lora.md; e.g. 8)",
    )
    train.add_argument("--adapter", metavar="DIR", help="with --init: a PEFT LoRA adapter folder, merged into it first")
    train.add_argument("--preset", metavar="NAME", help=PRESET_HELP)
    _common_training_flags(train, "FILE")
    train.set_defaults(run=_train)


def _pretrain(args: argparse.Namespace) -> None:
    run = _run_config(args, "task.name=pretrain")
    from attnkit.training.corpus import pretrain

    summary = pretrain(run, resume=args.resume, overwrite=args.overwrite)
    _print_summary(args, run.out, summary)


def _pretrain_command(commands: Commands) -> None:
    pretrain = commands.add_parser("pretrain", help="pretrain on raw text: masked LM, span infilling or causal LM")
    pretrain.add_argument("config", nargs="?", help="run configuration (YAML); flags and --set override it")
    pretrain.add_argument("--text", metavar="PATH", help="a .txt file or a folder of them")
    pretrain.add_argument(
        "--arch",
        choices=["encoder", "decoder", "encoder-decoder"],
        help="encoder: masked LM; encoder-decoder: span infilling; decoder: causal LM",
    )
    pretrain.add_argument("--preset", metavar="NAME", help=PRESET_HELP)
    _common_training_flags(pretrain, "PATH")
    pretrain.set_defaults(run=_pretrain)


def _print_summary(args: argparse.Namespace, out: str, summary: dict) -> None:
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, the first process speaks for all
        print(json.dumps(summary) if args.json else _summary_text(out, summary))


def _summary_text(out: str, summary: dict) -> str:
    memory = "" if summary.get("peak_memory_mib") is None else f", peak memory {summary['peak_memory_mib']:,.0f} MiB"
    took = f"{summary['epochs']} epochs, {summary['minutes']:.1f} min{memory}"
    lines = [f"trained {summary['steps']} steps ({took}) -> {out}"]
    for split in ("dev", "test"):
        if summary.get(split):
            lines.append(f"{split}: " + "  ".join(f"{k} {v:.4f}" for k, v in summary[split].items()))
    if summary.get("stopped"):
        lines.append(
            f"stopped early, at step {summary['steps']:,} of {summary['planned_steps']:,}, by {summary['stopped']}"
        )
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> None:
    pipeline = _load_pipeline(args)
    pipeline.task.data = _columns(pipeline.task.data, args.set)
    metrics, examples, predictions = pipeline.evaluate(args.data, warn=_warn)
    print(json.dumps(metrics) if args.json else pipeline.task.report(metrics))
    if args.report:
        from attnkit.apps.report import write_report

        page = write_report(pipeline.task, args.path, args.data, metrics, examples, predictions, args.report)
        print(
            f"wrote {page} (open it in a browser) and its figures as PNG", file=sys.stderr if args.json else sys.stdout
        )


def _columns(data: DataConfig, settings: list[str]) -> DataConfig:
    """`data` with the columns `settings` name ("data.label_column=score")."""
    columns = {}
    for setting in settings:
        key, _, value = setting.partition("=")
        name = key.removeprefix("data.")
        if not key.startswith("data.") or not name.endswith("_column") or name not in vars(data) or not value:
            known = ", ".join(f"data.{k}" for k in vars(data) if k.endswith("_column"))
            raise AttnkitError(f"--set {setting}: evaluate names a file's columns: {known} (as KEY=NAME)")
        columns[name] = value
    return dataclasses.replace(data, **columns)


def _evaluate_command(commands: Commands) -> None:
    evaluate = commands.add_parser("evaluate", help="score a trained model on a labelled file")
    evaluate.add_argument("path", help=TRAINED)
    evaluate.add_argument(
        "--data", required=True, metavar="FILE", help="a labelled file, as for training (or a datasets split's folder)"
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=NAME",
        help="a column of the file by another name than the model's, e.g. data.label_column=score",
    )
    evaluate.add_argument(
        "--report",
        metavar="DIR",
        help="also write DIR/report.html, one page with figures (a confusion matrix, each class's or tag's scores, "
        "the worst examples) and its figures as PNG (the viz extra's matplotlib)",
    )
    device_flags(evaluate, int8=True)
    evaluate.set_defaults(run=_evaluate)


def _average(args: argparse.Namespace) -> None:
    from attnkit.apps.average import average

    average(args.paths, args.out, overwrite=args.overwrite)
    print(f"averaged the weights of {len(args.paths)} models -> {args.out}")


def _average_command(commands: Commands) -> None:
    help = "average the weights of models fine-tuned from one checkpoint (a model soup): often more accurate than "
    _many_into_one(
        commands, "average", help + "each, and one model to serve", "the averaged model's directory", _average
    )


def _many_into_one(commands: Commands, name: str, help: str, out: str, run) -> None:  # noqa: ANN001
    """A command that makes one model of several: average, ensemble."""
    parser = commands.add_parser(name, help=help)
    parser.add_argument("paths", nargs="+", metavar="DIR", help="trained model directories (two or more)")
    parser.add_argument("--out", required=True, metavar="DIR", help=out)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)


def _ensemble(args: argparse.Namespace) -> None:
    from attnkit.apps.ensemble import ensemble

    made = ensemble(args.paths, args.out, overwrite=args.overwrite)
    print(f"an ensemble of {len(args.paths)} {made.task.name} models -> {args.out}")


def _ensemble_command(commands: Commands) -> None:
    help = "models of one task and label set (any architectures, any random starts) as one model that predicts "
    _many_into_one(
        commands, "ensemble", help + "with the mean of their probabilities", "the ensemble's directory", _ensemble
    )


def _load_pipeline(args: argparse.Namespace) -> Pipeline:
    """The model of a command with --device, --int8 and --engine; with --int8, a line on whose int8 runs it."""
    from attnkit.inference.pipeline import Pipeline
    from attnkit.interop.ct2 import ct2_installed

    pipeline = Pipeline.load(args.path, device=args.device, int8=args.int8, engine=args.engine)
    if args.int8 and pipeline.engine.startswith("ctranslate2"):
        print("attnkit: int8 by CTranslate2", file=sys.stderr)
    elif args.int8:
        hint = "" if ct2_installed() else f"; CTranslate2's is faster and as accurate as float32: {install('ct2')}"
        print(f"attnkit: int8 by attnkit's own engine (PyTorch's dynamic quantization){hint}", file=sys.stderr)
    return pipeline


def _warn(message: str) -> None:
    print(f"attnkit: warning: {message}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """attnkit's own warnings in one line, as its errors; other libraries' as Python shows them."""
    if issubclass(category, AttnkitWarning):
        _warn(str(message))
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _predict(args: argparse.Namespace) -> None:
    """One output line per input line; a blank input line gives an empty line (JSON: the prediction is null)."""
    from attnkit.data.readers import read_lines, stdin_lines

    if args.file and args.data and args.file != args.data:
        raise AttnkitError(f"two files to predict, {args.file} and --data {args.data}: give one")
    data = args.file or args.data
    pipeline = _load_pipeline(args)
    task = pipeline.task
    if data and Path(data).suffix != ".txt":
        examples, predictions = pipeline.predict_file(data)
    else:
        lines = [line.rstrip("\n") for line in (read_lines(data) if data else stdin_lines())]
        examples, predictions = pipeline.predict_lines(lines, data or "standard input")
        _say_what_was_cut(pipeline, [line for line in lines if not task.blank(line)])
    for example, prediction in zip(examples, predictions):
        if args.json:
            print(json.dumps(task.record(example, prediction), ensure_ascii=False))
        else:
            print("" if prediction is None else task.render(prediction))


def _say_what_was_cut(pipeline: Pipeline, lines: list[str]) -> None:
    """A warning of the inputs longer than the model reads, which were cut to its limit."""
    over = [count for count in pipeline.over_limit(lines) if count is not None]
    if over:
        longest, limit = max(over)
        _warn(
            f"{len(over):,} of {len(lines):,} inputs had more tokens than the model reads ({limit:,}) and were cut to "
            f"it (the longest: {longest:,} tokens)"
        )


def _predict_command(commands: Commands) -> None:
    predict = commands.add_parser(
        "predict", help="predict for a file or standard input: one result per input line, blank for a blank line"
    )
    predict.add_argument("path", help=TRAINED)
    predict.add_argument(
        "file",
        nargs="?",
        help="a data file (its gold column is ignored), or .txt with one input per line (default: standard input)",
    )
    predict.add_argument("--data", metavar="FILE", help="the same as FILE")
    predict.add_argument(
        "--json", action="store_true", help="JSON lines with the input and the prediction (null for a blank line)"
    )
    device_flags(predict, int8=True)
    predict.set_defaults(run=_predict)


def _export(args: argparse.Namespace) -> None:
    from attnkit.files import check_output

    if sum((args.onnx, args.ct2, args.peft)) > 1:
        raise AttnkitError("--onnx, --ct2 and --peft are different exports: choose one")
    if Path(args.out).resolve() == Path(args.path).resolve():
        raise AttnkitError(f"{args.out}: is the model to export; write the export to a new directory")
    check_output(args.out, args.overwrite)
    if args.onnx:
        from attnkit.apps.onnx_export import export_onnx

        manifest = export_onnx(args.path, args.out, args.int8, args.trust_pickle)
        graphs = ", ".join(f"{name}.onnx" for name in manifest["graphs"])
        worst = max(manifest["max_difference"].values())
        against = "float32 (int8 graphs)" if args.int8 else "attnkit"
        print(f"wrote {args.out} ({graphs}, tokenizer.json, onnx.json); largest difference from {against}: {worst:.1e}")
        return
    if args.ct2:
        from attnkit.apps.export import export_ct2

        if args.int8 and args.quantization not in (None, "int8"):
            raise AttnkitError(f"--int8 and --quantization {args.quantization} ask for two kinds of weights: give one")
        quantization = args.quantization or ("int8" if args.int8 else "float32")
        export_ct2(args.path, args.out, quantization, args.trust_pickle)
        print(f"wrote {args.out} (attnkit checkpoint; CTranslate2 {quantization} model in {args.out}/ctranslate2)")
        return
    if args.quantization:
        raise AttnkitError("--quantization sets a CTranslate2 export's weights: add --ct2")
    if args.peft:
        from attnkit.apps.export import export_peft

        task_type = export_peft(args.path, args.out, args.trust_pickle)
        print(f"wrote {args.out} (PEFT LoRA adapter, {task_type}: peft.PeftModel.from_pretrained(base model, DIR))")
        return
    if args.int8:
        raise AttnkitError(
            "--int8 quantizes an ONNX or CTranslate2 export: add --onnx or --ct2 (a Hugging Face directory stays "
            "float32)"
        )
    from attnkit.apps.export import export

    family = export(args.path, args.out, args.trust_pickle)
    print(f"wrote {args.out} (Hugging Face {family})")


def _export_command(commands: Commands) -> None:
    export = commands.add_parser(
        "export",
        help="write a model as a Hugging Face directory (config.json, model.safetensors, tokenizer.json) or, with "
        "--onnx, as ONNX graphs for onnxruntime",
    )
    export.add_argument("path", help=ANY_MODEL)
    export.add_argument("--out", required=True, metavar="DIR", help="the folder to write (a new one, or --overwrite)")
    export.add_argument(
        "--onnx",
        action="store_true",
        help="ONNX graphs (model.onnx, or encoder.onnx and decoder.onnx), checked against attnkit in onnxruntime",
    )
    export.add_argument(
        "--ct2",
        action="store_true",
        help="the checkpoint with a CTranslate2 model in DIR/ctranslate2, which predict, generate, evaluate and serve "
        "then run (the ct2 extra)",
    )
    export.add_argument(
        "--peft",
        action="store_true",
        help="a LoRA run's adapters and head as a PEFT adapter folder, for peft.PeftModel on its base",
    )
    export.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        help="with --ct2: how CTranslate2 stores the weights (default float32: the same outputs as attnkit)",
    )
    export.add_argument(
        "--int8",
        action="store_true",
        help="with --onnx: quantize the graphs' matrix products; with --ct2: int8 weights",
    )
    export.add_argument("--trust-pickle", action="store_true", help="allow reading a pytorch_model.bin")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out (an attnkit directory)")
    export.set_defaults(run=_export)


def _serve(args: argparse.Namespace) -> None:
    from attnkit.apps.limits import FLAGS, Limits

    try:
        from attnkit.apps.serve import serve
    except ImportError:
        raise AttnkitError(f"attnkit serve needs the serve extra: {install('serve')}") from None

    limits = Limits(**{name: getattr(args, name) for name in FLAGS})
    api_key = args.api_key or os.environ.get("ATTNKIT_API_KEY") or None
    serve(args.path, args.host, args.port, args.device, limits, args.int8, args.engine, api_key)


def _serve_command(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="serve a model over HTTP: /predict, /generate, /encode, /docs")
    serve.add_argument("path", help=ANY_MODEL)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: all)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument(
        "--api-key",
        metavar="KEY",
        help="the endpoints that run or describe the model want the header 'Authorization: Bearer KEY' (401 "
        "without it; /health and the pages do not); default: the environment's ATTNKIT_API_KEY, else none",
    )
    device_flags(serve, int8=True)
    limit_flags(serve)
    serve.set_defaults(run=_serve)


def _attention(args: argparse.Namespace) -> None:
    from attnkit.apps.attention_maps import attention, write_attention
    from attnkit.inference.pipeline import Pipeline
    from attnkit.nn.transformer import counted

    pipeline = Pipeline.load(args.path, device=args.device)
    result = attention(pipeline, args.text, args.target, args.path)
    page, *heatmaps = write_attention(result, args.out, png=not args.no_png)
    if result.prediction is not None:
        print(f"{'output' if result.target is not None else 'prediction'}: {result.prediction}")
    maps = ", ".join(
        f"{m.name} ({counted(m.weights.shape[0], 'layer')} x {counted(m.weights.shape[1], 'head')})"
        for m in result.maps
    )
    print(f"maps: {maps}")
    print(f"wrote {page} (open it in a browser)")
    if heatmaps:
        print(f"wrote {len(heatmaps)} heatmaps: {heatmaps[0].parent.parent}/*/layerL-headH.png")


def _attention_command(commands: Commands) -> None:
    attend = commands.add_parser(
        "attention", help="what the model attends to: heatmaps per layer and head (PNG) and an HTML page"
    )
    attend.add_argument("path", help=ANY_MODEL)
    attend.add_argument(
        "text", help="the input text, at most 128 tokens (a pair model's: the two texts, a tab between)"
    )
    attend.add_argument("--target", help="encoder-decoder models: the target text (default: the model's output)")
    attend.add_argument("--out", required=True, metavar="DIR", help="where attention.html and the PNGs go")
    attend.add_argument("--no-png", action="store_true", help="only the HTML page (no matplotlib needed)")
    device_flags(attend)
    attend.set_defaults(run=_attention)


def _generate(args: argparse.Namespace) -> None:
    """Text: each output streams as it is decoded, one line per prompt (a blank prompt gives a blank line); with
    --chat each prompt is a user's message, through the model's chat template."""
    from attnkit.data.readers import stdin_lines

    pipeline = _load_pipeline(args)
    prompts = [args.prompt] if args.prompt is not None else stdin_lines()
    if not any(prompt.strip() for prompt in prompts):
        where = "--prompt" if args.prompt is not None else "standard input"
        raise AttnkitError(f"{where}: no prompt to continue (one per line)")
    options = {**_decoding(args), "beam_size": args.beam_size}
    if args.chat:
        run = lambda given, **more: [  # noqa: E731 - a blank prompt gives None, as generate's
            None if not prompt.strip() else pipeline.chat([_conversation(args.system, prompt)], **more)[0]
            for prompt in given
        ]
    elif args.system is not None:
        raise AttnkitError("--system is the system message of a chat: add --chat")
    else:
        run = pipeline.generate
    if args.json:
        for prompt, output in zip(prompts, run(prompts, **options)):
            print(json.dumps({"prompt": prompt, "output": output}, ensure_ascii=False))
        return
    for prompt in prompts:
        run([prompt], **options, stream=lambda _, piece: print(piece, end="", flush=True))
        print(flush=True)


def _conversation(system: str | None, text: str) -> list[dict]:
    return [*([{"role": "system", "content": system}] if system else []), {"role": "user", "content": text}]


def _decoding(args: argparse.Namespace) -> dict:
    """generate's and chat's decoding flags, as Pipeline.generate takes them (None: the checkpoint's default)."""
    names = ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "repetition_penalty")
    return {**{name: getattr(args, name) for name in names}, "stop": args.stop or ()}


def decoding_flags(parser: argparse.ArgumentParser) -> None:
    """--max-new-tokens, --temperature, ...: how generate and chat decode; a flag not given is the checkpoint's
    default (its generation_config.json, a GGUF's sampling settings), else attnkit's (greedy)."""
    parser.add_argument("--max-new-tokens", type=int, help="most tokens to add (default: a seq2seq model's own; 64)")
    parser.add_argument(
        "--temperature", type=float, help="above 0: sample; 0: greedy (default: the checkpoint's, else 0)"
    )
    parser.add_argument(
        "--top-k", type=int, help="sample among the k likeliest tokens (default: the checkpoint's, else all)"
    )
    parser.add_argument(
        "--top-p",
        type=float,
        help="sample among the likeliest tokens of this much mass (default: the checkpoint's, else 1)",
    )
    parser.add_argument(
        "--seed", type=int, help="the same seed draws the same samples (default: a fresh one; not with --engine ct2)"
    )
    parser.add_argument(
        "--repetition-penalty",
        type=float,
        help="above 1: tokens already there are less likely (default: the checkpoint's, else 1)",
    )
    parser.add_argument(
        "--stop", action="append", metavar="TEXT", help="end an output before this text (repeat for several)"
    )


def _generate_command(commands: Commands) -> None:
    make = commands.add_parser(
        "generate", help="continue a prompt (a decoder) or write the output for an input (an encoder-decoder)"
    )
    make.add_argument(
        "path", help="model with a decoder: attnkit, Hugging Face (GPT-2, Llama, Qwen2, Gemma, BART, T5, ...) or GGUF"
    )
    make.add_argument("--prompt", help="the prompt (default: standard input, one prompt per line)")
    make.add_argument("--beam-size", type=int, help="beams (default: a seq2seq model's own, else 1: greedy)")
    make.add_argument(
        "--chat", action="store_true", help="each prompt is a user's message, in the model's chat template"
    )
    make.add_argument("--system", metavar="TEXT", help="with --chat: the system message before each prompt")
    decoding_flags(make)
    make.add_argument("--json", action="store_true", help="JSON lines with the prompt and the output (no streaming)")
    device_flags(make, int8=True)
    make.set_defaults(run=_generate)


def _chat(args: argparse.Namespace) -> None:
    """A conversation on the terminal: each line a user's message, the reply streamed as it is decoded. Off a
    terminal each line of standard input is a message and each reply a line of output."""
    pipeline = _load_pipeline(args)
    start = _conversation(args.system, "")[:-1]
    pipeline.chat_prompt([*start, {"role": "user", "content": ""}])  # a model that does not chat says so now
    terminal = sys.stdin.isatty()
    if terminal:
        print(
            f"attnkit chat: {args.path}; an empty line does nothing, /reset starts over, Ctrl-D ends", file=sys.stderr
        )
    messages, number = list(start), 0
    while True:
        try:
            line = input("> ") if terminal else _read_line(number + 1)
        except EOFError:
            break
        number += 1
        if not terminal and not line:
            break
        text = line.rstrip("\n")
        if text.strip() == "/reset":
            messages = list(start)
            continue
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        stream = lambda _, piece: print(piece, end="", flush=True)  # noqa: E731
        reply = pipeline.chat([messages], **_decoding(args), stream=stream)[0]
        print(flush=True)
        messages.append({"role": "assistant", "content": reply or ""})


def _read_line(number: int) -> str:
    """Line `number` of standard input ("" at its end)."""
    raw = sys.stdin.buffer.readline()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AttnkitError(f"standard input:{number}: not valid UTF-8 (byte 0x{raw[error.start]:02x})") from None


def _chat_command(commands: Commands) -> None:
    chat = commands.add_parser("chat", help="talk with a chat model on the terminal, its replies streamed")
    chat.add_argument("path", help="a chat model: a Hugging Face folder or GGUF file with a chat template")
    chat.add_argument("--system", metavar="TEXT", help="the system message (default: the chat template's own)")
    decoding_flags(chat)
    device_flags(chat, int8=True)
    chat.set_defaults(run=_chat)


def _demo(args: argparse.Namespace) -> None:
    from attnkit.apps.demo import demo

    demo(args.out)


def _demo_command(commands: Commands) -> None:
    demo = commands.add_parser("demo", help="train, score and use a model on bundled data, in minutes")
    demo.add_argument("--out", default="runs/demo", metavar="DIR", help="where the demo's models go")
    demo.set_defaults(run=_demo)


def _info(args: argparse.Namespace) -> None:
    from attnkit.apps.card import facts_lines, read_facts
    from attnkit.inference.pipeline import Pipeline

    pipeline = Pipeline.load(args.path, device=args.device, engine=args.engine)  # as predict and serve would run it
    device = next(pipeline.model.parameters()).device
    print(
        f"{'checkpoint':<11} {args.path}\n{pipeline.describe()}\n{'device':<11} {device}"
        + (" (auto)" if args.device == "auto" else "")
    )
    facts = read_facts(args.path)
    if facts is not None and pipeline.task.columns:  # what an attnkit run read of its data
        print(f"{'columns':<11} {pipeline.task.columns}")
    for key, value in facts_lines(facts):  # what its run learned from and scored: the model card's
        print(f"{key:<11} {value}")


def _info_command(commands: Commands) -> None:
    info = commands.add_parser(
        "info", help="print a checkpoint's architecture, parameter count and the device it would run on"
    )
    info.add_argument("path", help=ANY_MODEL)
    device_flags(info)
    info.add_argument("--engine", choices=ENGINES, default="auto", help=ENGINE_HELP)
    info.set_defaults(run=_info)


def _common_training_flags(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("--dev", metavar=kind, help="development data: picks the best checkpoint, stops early")
    parser.add_argument("--test", metavar=kind, help="test data, scored once at the end with the best checkpoint")
    parser.add_argument("--out", metavar="DIR", help="output directory (default runs/model)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--max-minutes", type=float)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting, e.g. train.lr=3e-4")
    either = parser.add_mutually_exclusive_group()
    either.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    either.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    device_flags(parser, default=None)  # None: train.device, whose default is auto


def device_flags(parser: argparse.ArgumentParser, int8: bool = False, default: str | None = "auto") -> None:
    """--device (and with `int8`, --int8 and --engine): where and how a command runs its model."""
    parser.add_argument("--device", default=default, help=DEVICE_HELP)
    if int8:
        parser.add_argument("--int8", action="store_true", help=INT8_HELP)
        parser.add_argument("--engine", choices=ENGINES, default="auto", help=ENGINE_HELP)


def limit_flags(parser: argparse.ArgumentParser) -> None:
    """--max-batch, --max-wait-ms, ...: the server's limits (attnkit.apps.limits), with their defaults."""
    import dataclasses

    from attnkit.apps.limits import FLAGS, Limits

    defaults, kinds = {f.name: f.default for f in dataclasses.fields(Limits)}, typing.get_type_hints(Limits)
    for name, help in FLAGS.items():
        literal = typing.get_origin(kinds[name]) is typing.Literal
        choices, kind = (typing.get_args(kinds[name]), None) if literal else (None, type(defaults[name]))
        flag = f"--{name.replace('_', '-')}"
        parser.add_argument(
            flag, type=kind, choices=choices, default=defaults[name], help=f"{help} (default {defaults[name]})"
        )


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake said in one line like attnkit's other errors (argparse prints the usage first)."""

    def error(self, message: str) -> typing.NoReturn:
        command = self.prog.removeprefix("attnkit").strip()
        said = f"{command}: {message}" if command else message
        self.exit(2, f"attnkit: error: {said} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="attnkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser


COMMANDS = (
    _train_command,
    _pretrain_command,
    _evaluate_command,
    _average_command,
    _ensemble_command,
    _predict_command,
    _export_command,
    _serve_command,
    _attention_command,
    _generate_command,
    _chat_command,
    _demo_command,
    _info_command,
)


def main(argv: list[str] | None = None) -> int:
    try:  # as a command, Ctrl-C is answered by attnkit.__main__ (a training run by its loop); KeyboardInterrupt here
        args = build_parser().parse_args(argv)
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args.run(args)
    except AttnkitError as error:
        sys.stderr.write(f"attnkit: error: {error}\n")  # one write: under torchrun each process says it
        return 2
    except KeyboardInterrupt:
        print("attnkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout stopped early (`attnkit predict ... | head`): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
        return 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe stopped
    return 0


if __name__ == "__main__":
    sys.exit(main())
