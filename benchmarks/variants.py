"""A checkpoint's bundles for the benchmarks that compare our precisions: FP32 and each INT8 method, exported and
quantized (gate off) by our tooling into a work folder once, and reused."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

Command = TypeVar("Command", bound=Callable[..., object])

METHODS = ("faithful", "dynamic")


def timing_options(rounds: int, per_round: int) -> Callable[[Command], Command]:
    """The `--rounds`, `--per-round` and `--threads` options of a script timing our variants beside a peer, with
    these defaults."""

    def decorate(command: Command) -> Command:
        for option in (
            click.option("--threads", default=2, show_default=True, help="Threads of every engine."),
            click.option(
                "--per-round", default=per_round, show_default=True, help="Timed calls per variant and round."
            ),
            click.option(
                "--rounds", default=rounds, show_default=True, help="Alternating rounds (the median of their medians)."
            ),
        ):
            command = option(command)
        return command

    return decorate


def bundles(checkpoint: Path, work: Path, max_length: int | None = None) -> dict[str, tuple[Path, str]]:
    """(bundle, precision) by variant name: "mbert-edge FP32" and "mbert-edge INT8 <method>" (windows of
    `max_length` tokens, default the model's)."""
    from mbert_edge.export import export_bundle
    from mbert_edge.progress import Progress
    from mbert_edge.quantization import QuantizationConfig
    from mbert_edge.quantize.pipeline import quantize_bundle

    fp32 = work / "fp32"
    if not (fp32 / "mbert_edge.json").exists():
        export_bundle(str(checkpoint), fp32, max_length=max_length, force=True, progress=Progress())
    made = {"mbert-edge FP32": (fp32, "fp32")}
    for method in METHODS:
        target = work / method
        if not (target / "model.int8.onnx").exists():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(fp32, target)
            quantize_bundle(target, QuantizationConfig.of(method, min_agreement=0.0), Progress())
        made[f"mbert-edge INT8 {method}"] = (target, "int8")
    return made
