"""`mbert-edge batch` on one machine against Ray: rows/s and peak RSS per worker, measured in one run.

    python benchmarks/batch_scale.py BUNDLE --data ../shared/data/tatoeba [--rows 24000] [--out DIR]

Writes the sentences (every line of the folder's <lang>.txt files, repeated up to `--rows`) to a Parquet file,
then runs the real command in a fresh process for each configuration, one after the other: single process
(ONNX Runtime on all usable cores), `--ray` with 1 worker x all threads, and `--ray` with one worker per core
x 1 thread (a local Ray instance, bound to 127.0.0.1, workers at normal priority). Rows/s is taken two ways: end to end (the process's
wall time: imports, loading, Ray's start) and the command's own figure (from the first read to the last write,
actors' start included). Peak RSS is each process's high-water mark (VmHWM): the command's process, and for
Ray every actor (sampled from /proc while it runs). Label agreement with the single-process run is reported
too: plain dynamic INT8 is not batch-invariant, so Ray's different batch-mates may flip close calls.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import pyarrow as pa
import pyarrow.parquet as pq

from mbert_edge.bench.measure import machine
from mbert_edge.bench.report import machine_line
from mbert_edge.runtime.cpus import available_cpus
from mbert_edge.textdata import load_textset

RATE = re.compile(r"([\d,]+) rows in ([\d.]+) s")


def peak_rss_mb(pid: int) -> float | None:
    """A live process's high-water resident set (VmHWM), in MB; None once it is gone."""
    try:
        found = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(found.group(1)) / 1024 if found else None  # an exiting process has no memory figures left


def actor_pids() -> list[int]:
    """Ray Data's map actors on this machine (their process title is `ray::MapWorker(...)`)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::MapWorker"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def run(args: list[str], env: dict[str, str]) -> dict:
    """Run the command, sampling peak RSS of it and of any map actors every 0.2 s."""
    earlier = set(actor_pids())  # a previous run's actors may still be exiting
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mbert_edge", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
    )
    actors: dict[int, float] = {}
    driver = 0.0
    while process.poll() is None:
        driver = max(driver, peak_rss_mb(process.pid) or 0.0)
        for pid in set(actor_pids()) - earlier:
            actors[pid] = max(actors.get(pid, 0.0), peak_rss_mb(pid) or 0.0)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    out = process.stdout.read()
    if process.returncode:
        raise click.ClickException(f"{' '.join(args)} failed with exit code {process.returncode}")
    rows, seconds = RATE.search(out).groups()
    rows = int(rows.replace(",", ""))
    seconds = max(float(seconds), 0.1)  # the summary prints seconds to 0.1 s: a shorter run counts as 0.1 s
    return {
        "summary": out.strip(),
        "rows": rows,
        "wall_s": round(wall, 1),
        "rows_per_s_end_to_end": round(rows / wall, 2),
        "rows_per_s_command": round(rows / seconds, 2),
        "peak_rss_mb_command": round(driver, 1),
        "peak_rss_mb_actors": sorted(round(v, 1) for v in actors.values()),
    }


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="Folder of <lang>.txt.")
@click.option("--rows", type=int, default=24_000, show_default=True)
@click.option("--precision", default="int8", show_default=True)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Runs of every configuration, in alternating order.",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Write batch_scale.json here."
)
def main(bundle: Path, data: Path, rows: int, precision: str, rounds: int, out: Path | None) -> None:
    sentences = [s for group in load_textset(data).texts.values() for s in group]
    texts = [sentences[i % len(sentences)] for i in range(rows)]
    cores = available_cpus()
    configs = {
        "single process, all threads": [],
        f"Ray, 1 worker x {cores} threads": ["--ray", "--workers", "1", "--threads-per-worker", str(cores)],
        f"Ray, {cores} workers x 1 thread": ["--ray", "--workers", str(cores), "--threads-per-worker", "1"],
    }
    # A local Ray instance on 127.0.0.1 only, its workers at the single process's priority (Ray starts them at
    # niceness 15, which on a shared machine hands their CPU time to everyone else's processes).
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_worker_niceness": "0"}
    results = {
        "machine": machine("onnxruntime", "pyarrow", "ray", "mbert-edge"),
        "rows": rows,
        "distinct_sentences": len(set(texts)),
        "precision": precision,
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "sentences.parquet"
        pq.write_table(pa.table({"id": pa.array(range(rows), pa.int64()), "text": texts}), source)
        reference = None
        for round_ in range(rounds):  # ABC, CBA, ...: drift on a shared machine falls on every configuration
            for name, extra in configs.items() if round_ % 2 == 0 else reversed(configs.items()):
                target = Path(work) / f"out-{round_}-{len(results['runs'].get(name, []))}-{name[:6]}"
                click.echo(f"round {round_ + 1}: {name} ...", err=True)
                result = run(
                    [
                        "batch",
                        str(bundle),
                        str(source),
                        str(target),
                        "--precision",
                        precision,
                        "--id-column",
                        "id",
                        *extra,
                    ],
                    env,
                )
                labels = pq.read_table(target).sort_by("id").column("label").to_pylist()
                reference = reference if reference is not None else labels if extra == [] else None
                if reference is not None:
                    result["label_agreement_with_single"] = round(
                        sum(a == b for a, b in zip(labels, reference)) / rows, 4
                    )
                results["runs"].setdefault(name, []).append(result)
                click.echo(json.dumps(result), err=True)
    mean = {name: sum(r["rows_per_s_command"] for r in runs) / len(runs) for name, runs in results["runs"].items()}
    single = mean["single process, all threads"]
    results["mean_rows_per_s_command"] = {name: round(v, 2) for name, v in mean.items()}
    results["ray_best_share_of_single"] = round(max(v for n, v in mean.items() if n.startswith("Ray")) / single, 3)
    click.echo(
        "| configuration | rows/s (command), mean and per round | rows/s end to end | peak RSS MB: command | "
        "actors | labels = single |\n|---|---|---|---|---|---|"
    )
    for name, runs in results["runs"].items():
        actors = sorted({round(v) for r in runs for v in r["peak_rss_mb_actors"]})
        per_round = ", ".join(f"{r['rows_per_s_command']:.1f}" for r in runs)
        end_to_end = ", ".join(f"{r['rows_per_s_end_to_end']:.1f}" for r in runs)
        click.echo(
            f"| {name} | **{mean[name]:.1f}** ({per_round}) | {end_to_end} | "
            f"{max(r['peak_rss_mb_command'] for r in runs):.0f} | {', '.join(map(str, actors)) or '-'} | "
            f"{', '.join(str(r.get('label_agreement_with_single', '-')) for r in runs)} |"
        )
    click.echo(
        f"Ray's best: {results['ray_best_share_of_single']:.1%} of the single process (mean command figures); "
        + machine_line(results["machine"])
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "batch_scale.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
