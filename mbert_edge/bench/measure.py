"""What `mbert-edge bench` measures: latency by length, end-to-end latency on real sentences, throughput by
batch size, cold start and peak RSS, and a thread sweep. Plain timing loops over the runtime's own
classes: no library measures an ONNX bundle end to end with its tokenizer, so this is written here."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import Progress
from ..runtime import TaskModel, load
from ..runtime.batching import graph_feed
from ..runtime.cpus import available_cpus, cpu_flags, cpu_model
from ..runtime.integrity import framed_ids
from ..runtime.runner import session_options
from ..runtime.textinput import TextInput

LENGTHS = (16, 32, 64, 128, 256, 512)
BATCH_SIZES = (8, 32, 64)
WIDE_SPREAD = 1.5  # p90 / p50 above this: the machine was busy or throttling; the figures are unsteady

# Ends every cold-start script (ours and the peers' in benchmarks/): seconds since its `start`, and peak RSS
# from VmHWM (ru_maxrss of a child started by a large parent reports the parent's peak).
COLD_START_REPORT = """
import json, resource, time
seconds = time.perf_counter() - start
try:
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak}))
"""
COLD_START = """
import sys, time
start = time.perf_counter()
import mbert_edge
model = mbert_edge.load(sys.argv[1], precision=sys.argv[2])
model.predict(model.probe)
"""


def machine(*packages: str) -> dict[str, Any]:
    """The machine a report was measured on: CPU, usable cores, CPU flags, Python, and the versions of
    `packages` that are installed (each report names the libraries it compares)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return {
        "cpu": cpu_model(),
        "usable_cores": available_cpus(),
        "flags": sorted(cpu_flags()),
        "python": platform.python_version(),
        "versions": versions,
    }


def time_calls(call: Callable[[], Any], min_runs: int, max_seconds: float, warmup: int = 3) -> np.ndarray:
    """Seconds per call: `warmup` untimed calls, then at least `min_runs` timed ones, continuing while
    under `max_seconds` up to 10x `min_runs` (more samples, steadier medians, for fast calls)."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - began < max_seconds and len(times) < 10 * min_runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def side_by_side(calls: dict[str, Callable[[], Any]], rounds: int = 5, per_round: int = 15) -> dict[str, float]:
    """p50 ms of each call, timed in alternating rounds (the median of the round medians): a machine drifts
    between runs minutes apart by more than the gaps between the models being compared."""
    medians: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            medians[name].append(float(np.median(time_calls(call, per_round, 0.0))) * 1e3)
    return {name: float(np.median(values)) for name, values in medians.items()}


def pipeline_timings(
    pipe: Callable, forward_128: Callable[[], Any], sentences: list[str], single: list[str], runs: int
) -> dict[str, Any]:
    """A peer's figures, timed as our `Classifier` is in benchmarks/peers.py: single-sentence end-to-end
    latency through `pipe`, the model alone on one 128-token input, and batch-32 throughput."""
    one_by_one = itertools.cycle(single)
    latency = summary(time_calls(lambda: pipe(next(one_by_one)), runs, 0.0))
    fixed = summary(time_calls(forward_128, max(5, runs // 4), 0.0))
    seconds = float(time_calls(lambda: pipe(sentences, batch_size=32), 1, 0.0, warmup=0).min())
    return {"end_to_end": latency, "s128": fixed, "sentences_per_s": len(sentences) / seconds}


def summary(seconds: np.ndarray) -> dict[str, Any]:
    """p50/p90/p99 in ms, the number of runs, and whether the spread is wide."""
    p50, p90, p99 = (float(np.percentile(seconds, q) * 1e3) for q in (50, 90, 99))
    return {
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "runs": int(seconds.size),
        "wide_spread": p90 > WIDE_SPREAD * p50,
    }


def exact_length_feed(model: TaskModel, length: int) -> dict[str, np.ndarray]:
    """One input of exactly `length` tokens ([CLS], ordinary ids, [SEP]) for the graph alone."""
    filler = [min(1000, model.bundle.manifest.vocab_size - 1)] * (length - 2)
    return graph_feed(model.runner.input_names, framed_ids(model.bundle.manifest, filler))


def graph_seconds(
    model: TaskModel, length: int, min_runs: int, max_seconds: float = 0.0, warmup: int = 3
) -> np.ndarray:
    """Seconds per batch-1 run of the graph alone on exactly `length` tokens."""
    feed = exact_length_feed(model, length)
    return time_calls(lambda: model.session.run(None, feed), min_runs, max_seconds, warmup)


def latency_by_length(
    model: TaskModel,
    lengths: tuple[int, ...],
    min_runs: int,
    max_seconds: float,
    advance: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Batch-1 latency of the graph at exact sequence lengths (no tokenisation)."""
    results = {}
    for length in lengths:
        results[str(length)] = summary(graph_seconds(model, length, min_runs, max_seconds))
        advance(1)
    return results


def end_to_end(model: TaskModel, sentences: list[TextInput], min_runs: int, max_seconds: float) -> dict[str, Any]:
    """Batch-1 latency of one real sentence at a time, tokenisation and post-processing included."""
    one_by_one = itertools.cycle(sentences)
    return summary(time_calls(lambda: model.predict(next(one_by_one)), min_runs, max_seconds))


def throughput(model: TaskModel, sentences: list[TextInput], batch_size: int, repeats: int = 3) -> dict[str, Any]:
    """Sentences and real tokens per second over all `sentences` at `batch_size` (best of `repeats`)."""
    tokens = sum(len(e.ids) for e in model.tokenizer.encode_batch(sentences))
    best = float(time_calls(lambda: model.predict(sentences, batch_size=batch_size), repeats, 0.0, warmup=1).min())
    return {
        "sentences_per_s": len(sentences) / best,
        "tokens_per_s": tokens / best,
        "sentences": len(sentences),
        "tokens": tokens,
    }


def script_cold_start(script: str, *args: str) -> dict[str, Any]:
    """Run `script` (which sets `start`, loads and predicts once) in a fresh process of this Python: its
    seconds and peak RSS (the peers' cold starts are measured with it too)."""
    done = subprocess.run(
        [sys.executable, "-c", script + COLD_START_REPORT, *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def cold_start(bundle: str | Path, precision: str, runs: int = 3) -> dict[str, Any]:
    """Fresh processes (import + load + first prediction): median seconds and peak RSS."""
    samples = [script_cold_start(COLD_START, str(bundle), precision) for _ in range(runs)]
    return {
        "seconds": float(np.median([s["seconds"] for s in samples])),
        "peak_rss_mb": float(np.median([s["peak_rss_mb"] for s in samples])),
        "runs": runs,
    }


def thread_sweep(
    bundle: str | Path, precision: str, sentences: list[TextInput], length: int, min_runs: int, max_seconds: float
) -> dict[str, Any]:
    """For 1..usable cores intra-op threads: batch-1 latency at `length` tokens and throughput at batch 32.
    Recommends the count with the best throughput, unless fewer threads come within 5% (they leave cores
    free for the rest of the app)."""
    rows = {}
    for threads in range(1, available_cpus() + 1):
        model = load(bundle, precision=precision, options=session_options(threads), verify_hashes=False)
        rows[str(threads)] = {
            "latency": summary(graph_seconds(model, min(length, model.max_length), min_runs, max_seconds)),
            "throughput": throughput(model, sentences, 32),
        }
    fastest = max(r["throughput"]["sentences_per_s"] for r in rows.values())
    best = min(int(t) for t, r in rows.items() if r["throughput"]["sentences_per_s"] >= 0.95 * fastest)
    return {"length": length, "threads": rows, "recommended_intra_op_threads": best}


def run(
    bundle: str | Path,
    sentences: dict[str, list[TextInput]],  # (question, context) pairs for question answering
    precisions: Sequence[str],
    lengths: tuple[int, ...],
    batch_sizes: tuple[int, ...],
    min_runs: int,
    max_seconds: float,
    cold: bool,
    sweep: bool,
    progress: Progress,
) -> dict[str, Any]:
    """Every figure of `mbert-edge bench` for the given precisions of one bundle."""

    texts = [t for group in sentences.values() for t in group]
    results: dict[str, Any] = {
        "bundle": str(bundle),
        "machine": machine("onnxruntime", "mbert-edge"),
        "data": {"sentences": len(texts), "groups": len(sentences)},
        "settings": {"min_runs": min_runs, "max_seconds": max_seconds},
        "variants": {},
    }
    for precision in precisions:
        model = load(bundle, precision=precision)
        usable = tuple(sorted({min(n, model.max_length) for n in lengths}))  # capped at the max length
        with progress.bar(f"{precision}: latency by length", len(usable)) as advance:
            by_length = latency_by_length(model, usable, min_runs, max_seconds, advance)
        with progress.step(f"{precision}: end to end and throughput on {len(texts)} sentences"):
            variant = {
                "latency_by_length": by_length,
                "end_to_end": end_to_end(model, texts, min_runs, max_seconds),
                "throughput": {str(b): throughput(model, texts, b) for b in batch_sizes},
            }
        if cold:
            with progress.step(f"{precision}: cold start in fresh processes"):
                variant["cold_start"] = cold_start(bundle, precision)
        results["variants"][precision] = variant
    if sweep:
        precision = precisions[-1]
        with progress.step(f"{precision}: thread sweep"):
            results["thread_sweep"] = {
                "precision": precision,
                **thread_sweep(bundle, precision, texts, 128, min_runs, max_seconds),
            }
    return results
