"""Every supported architecture and task through export and both INT8 methods, on the tiny random models the
tests build (tests/families.py: DistilBERT with WordPiece, RoBERTa with byte-level BPE, XLM-R with Unigram, and
BERT with a Unigram tokenizer as a sentence encoder): the fused graph's parity against PyTorch, the fused operators,
and INT8 against FP32 on the built-in sample (agreement, or mean / min cosine for embeddings).

    python benchmarks/architectures.py [--family distilbert ...] [--out FILE] [--json FILE]

Random heads give near ties, so agreement here shows the pipeline works on each graph, not a model's accuracy
(the fine-tuned MiniLM classifier is the accuracy benchmark).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import click
from json_output import JSON_OPTION, write_json

from mbert_edge.bundle import Bundle
from mbert_edge.export import export_bundle
from mbert_edge.quantization import QuantizationConfig
from mbert_edge.quantize.pipeline import quantize_bundle
from mbert_edge.runtime.accuracy import Report
from mbert_edge.runtime.cpus import cpu_flags
from mbert_edge.tasks import TASKS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from families import write_family_checkpoint

CASES = [(family, task) for family in ("distilbert", "roberta", "xlm-roberta") for task in TASKS] + [
    ("bert", "feature-extraction")
]


def int8_figure(report: Report) -> str:
    overall = report["overall"]
    if report["kind"] == "labels":
        return f"{overall['agreement']:.3f}"
    return f"{overall['mean_cosine']:.6f} / {overall['min_cosine']:.6f}"


@click.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the table here.")
@click.option("--family", "families", multiple=True, help="Only these model types (repeatable; default all).")
@JSON_OPTION
def main(out: Path | None, families: tuple[str, ...], json_file: Path | None) -> None:
    rows = [
        "| architecture | task | tokenizer | parity max abs diff | fused operators | INT8 faithful | INT8 dynamic |",
        "|---|---|---|---|---|---|---|",
    ]
    records = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for family, task in [(f, t) for f, t in CASES if not families or f in families]:
            name = f"{family}-{task}"
            checkpoint = write_family_checkpoint(root / name / "checkpoint", family, task)
            bundle = export_bundle(str(checkpoint), root / name / "bundle").path
            manifest = Bundle.open(bundle).manifest
            tokenizer = {"distilbert": "WordPiece", "roberta": "byte-level BPE"}.get(family, "Unigram")
            reports = {}
            for method in ("faithful", "dynamic"):
                copy = Path(shutil.copytree(bundle, root / name / method))
                reports[method] = quantize_bundle(
                    copy, QuantizationConfig(method=method, min_agreement=0.0, min_cosine=0.0)
                )
            figures = [int8_figure(report) for report in reports.values()]
            fused = manifest.optimization
            counts = ", ".join(f"{op} {n}" for op, n in fused.fused_operators.items() if n and op != "nodes")
            counts += f" ({fused.fused_operators['nodes']} nodes)"
            rows.append(
                f"| {family} | {task} | {tokenizer} | {fused.parity.max_abs_diff:.1e} | {counts} | "
                f"{figures[0]} | {figures[1]} |"
            )
            click.echo(rows[-1], err=True)
            records.append(
                {
                    "family": family,
                    "task": task,
                    "tokenizer": tokenizer,
                    "parity_max_abs_diff": fused.parity.max_abs_diff,
                    "fused_operators": fused.fused_operators,
                    "int8": {method: report["overall"] for method, report in reports.items()},
                }
            )
    table = "\n".join(
        [
            f"CPU flags: {', '.join(sorted(cpu_flags()))}; built-in sample (60 sentences, 17 languages); "
            "embeddings: mean / min cosine.",
            "",
            *rows,
        ]
    )
    click.echo(table)
    if out:
        out.write_text(table + "\n", encoding="utf-8")
    write_json(json_file, {"cpu_flags": sorted(cpu_flags()), "rows": records})


if __name__ == "__main__":
    main()
