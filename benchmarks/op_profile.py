"""Where a graph's time goes, per operator type: ONNX Runtime's own profiler on the models of bundles,
at exact lengths (batch 1, or `--batch` copies of the same row), the same inputs for every model, side by side
in one table.

    python benchmarks/op_profile.py BUNDLE [BUNDLE ...] [--lengths 14,32,128] [--batch 1] [--runs 50] [--precision int8]

Each model gets a session with the runtime's settings and profiling on; of its warm-up and timed runs, only
the timed ones (the last `--runs` "model_run" events) are read, each node's kernel time summed by operator
type and divided by the runs: ms per call. The profiler's overhead inflates small nodes a little, equally for
every model; the wall column is timed without profiling, all models in alternating rounds (`side_by_side`).
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections import Counter
from pathlib import Path

import click
import numpy as np
import onnxruntime as ort

from mbert_edge.bench.measure import exact_length_feed, side_by_side
from mbert_edge.bundle import Bundle
from mbert_edge.runtime import TaskModel, load
from mbert_edge.runtime.cpus import cpu_flags
from mbert_edge.runtime.runner import session_options

SHOWN = 0.01  # operator types taking at least this share of some model's kernel time get their own row


def op_times(path: Path, feed: dict, runs: int, warmup: int = 10) -> tuple[Counter, Counter]:
    """(ms per call by operator type, nodes by operator type) of the ONNX file at `path` on `feed`."""
    with tempfile.TemporaryDirectory() as folder:
        options = session_options()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    timed = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])[-runs:]
    start = timed[0]["ts"]
    times: Counter = Counter()
    nodes: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            nodes[event["name"]] = event["args"]["op_name"]
            if event["ts"] >= start:
                times[event["args"]["op_name"]] += event["dur"] / 1e3 / runs
    return times, Counter(nodes.values())


def model_label(model: TaskModel) -> str:
    q = model.bundle.manifest.quantization
    method = f" {q.config.method}" if model.precision == "int8" and q else ""
    return f"{model.bundle.path.name} {model.precision}{method}"


@click.command()
@click.argument("bundles", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--lengths", default="14,32,128", show_default=True)
@click.option("--batch", default=1, show_default=True, help="Rows per call (copies of one row: no padding).")
@click.option("--runs", default=50, show_default=True, help="Profiled runs per model and length.")
@click.option("--precision", type=click.Choice(["all", "fp32", "int8"]), default="int8", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write JSON here.")
def main(bundles: tuple[Path, ...], lengths: str, batch: int, runs: int, precision: str, out: Path | None) -> None:
    models = {
        model_label(m): m
        for m in (
            load(path, precision=p, verify_hashes=False)
            for path in bundles
            for p in Bundle.open(path).models
            if precision in ("all", p)
        )
    }
    results = {}
    click.echo(
        f"CPU flags: {', '.join(sorted(cpu_flags()))}; onnxruntime {ort.__version__}; batch {batch}; ms per call"
    )
    for length in (int(n) for n in lengths.split(",")):
        feeds = {
            name: {k: np.repeat(v, batch, axis=0) for k, v in exact_length_feed(m, length).items()}
            for name, m in models.items()
        }
        wall = side_by_side({name: functools.partial(m.session.run, None, feeds[name]) for name, m in models.items()})
        profiles = {name: op_times(m.bundle.file(m.runner.name), feeds[name], runs) for name, m in models.items()}
        totals = {name: sum(times.values()) for name, (times, _) in profiles.items()}
        ops = sorted(
            {op for times, _ in profiles.values() for op in times},
            key=lambda op: -max(times[op] for times, _ in profiles.values()),
        )
        shown = [op for op in ops if any(times[op] >= SHOWN * totals[n] for n, (times, _) in profiles.items())]
        names = list(models)
        click.echo(f"\n{length} tokens\n\n| operator | " + " | ".join(f"{n} ms (nodes)" for n in names) + " |")
        click.echo("|---" * (len(names) + 1) + "|")
        for op in shown:
            click.echo(
                f"| {op} | " + " | ".join(f"{profiles[n][0][op]:.2f} ({profiles[n][1][op]})" for n in names) + " |"
            )
        rest = {n: totals[n] - sum(profiles[n][0][op] for op in shown) for n in names}
        others = {n: sum(c for op, c in profiles[n][1].items() if op not in shown) for n in names}
        click.echo("| other operators | " + " | ".join(f"{rest[n]:.2f} ({others[n]})" for n in names) + " |")
        click.echo(
            "| **all kernels** | "
            + " | ".join(f"{totals[n]:.2f} ({sum(profiles[n][1].values())})" for n in names)
            + " |"
        )
        click.echo("| wall, unprofiled p50 | " + " | ".join(f"{wall[n]:.2f}" for n in names) + " |")
        results[str(length)] = {
            n: {"ops": dict(profiles[n][0]), "nodes": dict(profiles[n][1]), "wall_ms": wall[n]} for n in names
        }
    if out is not None:
        profile = {"cpu_flags": sorted(cpu_flags()), "batch": batch, "results": results}
        out.write_text(json.dumps(profile, indent=2) + "\n")


if __name__ == "__main__":
    main()
