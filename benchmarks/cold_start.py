"""Where a cold start goes: each step of loading a bundle timed alone, in fresh processes.

    python benchmarks/cold_start.py BUNDLE [--precision int8] [--runs 5] [--json FILE]

A cold start (`mbert-edge bench`, `peers.py`) is import + load + first prediction in a new process. This script
splits it into the steps the runtime takes, each timed on its own in the same fresh process: the imports
(numpy, onnxruntime, tokenizers, the rest of mbert_edge), parsing tokenizer.json, hashing the model files,
building the ONNX Runtime session (and a second build with pre-packing off, to show how much of it is packing
the integer weights), and the first run (the runtime's load-time check). The whole cold start is then measured
as users see it (the runtime overlaps hashing with the other steps). Medians over `--runs` processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
from json_output import JSON_OPTION, write_json

from mbert_edge.bench.measure import cold_start

STEPS = """
import json, sys, time
marks = [time.perf_counter()]
import numpy
marks.append(time.perf_counter())
import onnxruntime as ort
marks.append(time.perf_counter())
import tokenizers
marks.append(time.perf_counter())
from mbert_edge.bundle import Bundle, TOKENIZER_NAME
from mbert_edge.runtime.integrity import check_graph, check_tokenizer
from mbert_edge.runtime.runner import session_options
marks.append(time.perf_counter())
bundle = Bundle.open(sys.argv[1])
check_tokenizer(bundle.file(TOKENIZER_NAME), bundle.manifest)
marks.append(time.perf_counter())
name = bundle.models[sys.argv[2]]
for file in bundle.model_files(name):
    bundle.verify_file(file)
marks.append(time.perf_counter())
session = ort.InferenceSession(str(bundle.file(name)), session_options(), providers=["CPUExecutionProvider"])
marks.append(time.perf_counter())
check_graph(session, bundle.file(name), bundle.manifest)
marks.append(time.perf_counter())
unpacked = session_options()
unpacked.add_session_config_entry("session.disable_prepacking", "1")
ort.InferenceSession(str(bundle.file(name)), unpacked, providers=["CPUExecutionProvider"])
marks.append(time.perf_counter())
print(json.dumps([b - a for a, b in zip(marks, marks[1:])]))
"""
NAMES = [
    "import numpy",
    "import onnxruntime",
    "import tokenizers",
    "import the rest of mbert_edge",
    "parse tokenizer.json",
    "sha256 of the model files",
    "build the session",
    "first run (the load-time check: 3 tokens)",
    "build the session, pre-packing off",
]


def step_times(bundle: Path, precision: str, runs: int) -> dict[str, float]:
    """Median seconds of each step over `runs` fresh processes."""
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", STEPS, str(bundle), precision], capture_output=True, text=True, check=True
        )
        samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return dict(zip(NAMES, np.median(np.array(samples), axis=0).tolist()))


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="int8", show_default=True)
@click.option("--runs", default=5, show_default=True, help="Fresh processes per measurement.")
@JSON_OPTION
def main(bundle: Path, precision: str, runs: int, json_file: Path | None) -> None:
    steps = step_times(bundle, precision, runs)
    whole = cold_start(bundle, precision, runs)
    unpacked = steps.pop("build the session, pre-packing off")
    click.echo(f"Cold start of {bundle} ({precision}), medians of {runs} fresh processes\n")
    click.echo("| step, timed alone | seconds |\n|---|---|")
    for name, seconds in steps.items():
        click.echo(f"| {name} | {seconds:.3f} |")
    click.echo(f"| **sum of the steps** | **{sum(steps.values()):.3f}** |")
    click.echo(f"| **cold start as measured (import + load + first prediction)** | **{whole['seconds']:.3f}** |")
    click.echo(f"| (the session build with weight pre-packing off, for comparison) | {unpacked:.3f} |")
    click.echo(f"\npeak RSS of the cold start: {whole['peak_rss_mb']:.0f} MB")
    write_json(json_file, {"steps_s": steps, "prepacking_off_build_s": unpacked, "cold_start": whole})


if __name__ == "__main__":
    main()
