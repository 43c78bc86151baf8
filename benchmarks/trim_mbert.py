"""Vocabulary trimming on a real-vocabulary bundle: rows kept, file sizes, output identity on Tatoeba,
held-out coverage, cold start and peak RSS, before and after.

    python benchmarks/trim_mbert.py BUNDLE WORKDIR --tatoeba ../shared/data/tatoeba [--per-language 200]

BUNDLE should hold FP32 and INT8 models (`mbert-edge export` then `mbert-edge quantize`). WORKDIR gets
`latin/` (`mbert-edge trim --scripts latin`) and `western/` (`--corpus` with six Western European
Tatoeba files), made by the same code as the command.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from mbert_edge import Classifier
from mbert_edge.bench.measure import cold_start
from mbert_edge.bundle import model_bytes
from mbert_edge.quantize.trim import script_pattern, trim
from mbert_edge.textdata import TextSet, load_textset

WESTERN = ("eng", "fra", "deu", "spa", "ita", "por")


def size_mb(bundle: Path, name: str) -> float:
    return model_bytes(bundle / name) / 1e6


@click.command()
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.argument("workdir", type=click.Path(path_type=Path))
@click.option("--tatoeba", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--per-language", default=200, show_default=True, help="Sentences per language for the output check.")
def main(bundle: Path, workdir: Path, tatoeba: Path, per_language: int) -> None:
    latin_only = script_pattern(["latin"])
    latin = trim(bundle, workdir / "latin", scripts=["latin"], force=True)
    corpus = TextSet({lang: load_textset(tatoeba / f"{lang}.txt").texts[lang] for lang in WESTERN})
    western = trim(bundle, workdir / "western", corpus=corpus, force=True)
    click.echo("| bundle | rows | fp32 MB | int8 MB | int8 cold start s | int8 peak RSS MB |")
    click.echo("|---|---|---|---|---|---|")
    for name, path in (("original", bundle), ("--scripts latin", latin.path), ("--corpus 6 western", western.path)):
        manifest = json.loads((path / "mbert_edge.json").read_text())
        start = cold_start(path, "int8")
        click.echo(
            f"| {name} | {manifest['embedding_rows']:,} | {size_mb(path, 'model.onnx'):.1f} | "
            f"{size_mb(path, 'model.int8.onnx'):.1f} | {start['seconds']:.2f} | {start['peak_rss_mb']:.0f} |"
        )
    click.echo("\nOutput identity, --scripts latin vs original, Latin-only Tatoeba sentences:")
    click.echo("| language | sentences | fp32 max abs diff | int8 max abs diff | int8 argmax identical |")
    click.echo("|---|---|---|---|---|")
    models = {(p, precision): Classifier(p, precision) for p in (bundle, latin.path) for precision in ("fp32", "int8")}
    for file in sorted(tatoeba.glob("*.txt")):
        sentences = [s for s in file.read_text(encoding="utf-8").splitlines() if latin_only.fullmatch(s)]
        if len(sentences) < 0.9 * len(file.read_text(encoding="utf-8").splitlines()):
            continue  # not a Latin-script language
        sentences = sentences[:per_language]
        diffs = {}
        for precision in ("fp32", "int8"):
            a = models[bundle, precision].logits(sentences)
            b = models[latin.path, precision].logits(sentences)
            diffs[precision] = (float(np.abs(a - b).max()), bool((a.argmax(1) == b.argmax(1)).all()))
        click.echo(
            f"| {file.stem} | {len(sentences)} | {diffs['fp32'][0]:.1e} | {diffs['int8'][0]:.1e} | {diffs['int8'][1]} |"
        )
    click.echo("\nCoverage of --corpus (held-out 10% of each file tokenizes unchanged):")
    for lang, cover in western.manifest.trim.coverage.items():
        click.echo(f"- {lang}: {cover['unchanged']:.1%} of {cover['sentences']}")


if __name__ == "__main__":
    main()
