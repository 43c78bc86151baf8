"""Timing a transformers `pipeline("text-classification")` the way peers.py times our Classifier; shared by
the PyTorch peers (peers.py) and the Optimum peers (optimum_peer.py, run in Optimum's own venv)."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from typing import Any, Callable

from mbert_edge.benchmark import COLD_START_REPORT, summary, time_calls


def timings(pipe: Callable, forward_128: Callable[[], Any], sentences: list[str], single: list[str],
            runs: int) -> dict[str, Any]:
    """Single-sentence end-to-end latency, the model alone on one 128-token input, batch-32 throughput."""
    one_by_one = itertools.cycle(single)
    latency = summary(time_calls(lambda: pipe(next(one_by_one)), runs, 0.0))
    fixed = summary(time_calls(forward_128, max(5, runs // 4), 0.0))
    seconds = float(time_calls(lambda: pipe(sentences, batch_size=32), 1, 0.0, warmup=0).min())
    return {"end_to_end": latency, "s128": fixed, "sentences_per_s": len(sentences) / seconds}


def cold_start(script: str, *args: str) -> dict[str, Any]:
    """Run `script` (which sets `start`, loads and predicts once) in a fresh process of this Python."""
    done = subprocess.run([sys.executable, "-c", script + COLD_START_REPORT, *args], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])
