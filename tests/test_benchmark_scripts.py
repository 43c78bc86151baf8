"""The latency, cold-start, profiling, serving and engines benchmark scripts on a tiny model with a couple of
repetitions: they run end to end and write well-formed output (their timings are read by people, never asserted).
The peers, batch-scale, architectures, pairs and faithful-variants scripts are run for their studies only (CI time)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mbert_edge.quantization import QuantizationConfig
from mbert_edge.quantize.pipeline import quantize_bundle

pytestmark = pytest.mark.slow  # subprocesses, servers, Ray or fresh venvs: pytest -m 'not slow' skips them

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def script(name: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """`python benchmarks/<name> ARGS...`, run for real from the benchmarks folder; it must exit 0."""
    done = subprocess.run(
        [sys.executable, name, *args], cwd=BENCHMARKS, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_latency_script_times_models_side_by_side(tmp_path, seqcls_bundle):
    bundle = Path(shutil.copytree(seqcls_bundle, tmp_path / "bundle"))
    quantize_bundle(bundle, QuantizationConfig(min_agreement=0.0))
    figures = tmp_path / "latency.json"
    result = script(
        "latency.py", str(bundle), "--lengths", "8,16", "--rounds", "1", "--json", str(figures), timeout=300
    )
    timed = json.loads(figures.read_text())["p50_ms"]
    assert set(timed) == {"8", "16"} and all(set(row) == {"bundle fp32", "bundle int8"} for row in timed.values())
    assert all(ms > 0 for row in timed.values() for ms in row.values())
    assert "| bundle fp32 |" in result.stdout and "(1.00x)" in result.stdout


def test_cold_start_script_times_each_step(tmp_path, seqcls_bundle):
    bundle = Path(shutil.copytree(seqcls_bundle, tmp_path / "bundle"))
    quantize_bundle(bundle, QuantizationConfig(min_agreement=0.0))
    figures = tmp_path / "cold_start.json"
    result = script("cold_start.py", str(bundle), "--runs", "1", "--json", str(figures), timeout=300)
    report = json.loads(figures.read_text())
    steps = report["steps_s"]
    assert {"import numpy", "parse tokenizer.json", "sha256 of the model files", "build the session"} <= set(steps)
    assert len(steps) == 8 and all(value >= 0 for value in steps.values()) and report["prepacking_off_build_s"] > 0
    assert report["cold_start"]["seconds"] > 0 and report["cold_start"]["peak_rss_mb"] > 0
    assert "**sum of the steps**" in result.stdout and "peak RSS of the cold start:" in result.stdout


def test_op_profile_sums_kernel_time_by_operator(tmp_path, seqcls_bundle, faithful_bundle):
    """Plain and faithful INT8 of one model, profiled side by side: every kernel's time lands in one row."""
    plain = Path(shutil.copytree(seqcls_bundle, tmp_path / "plain"))
    quantize_bundle(plain, QuantizationConfig(method="dynamic", min_agreement=0.0))
    out = tmp_path / "profile.json"
    result = script(
        "op_profile.py",
        str(plain),
        str(faithful_bundle),
        "--lengths",
        "8",
        "--batch",
        "3",
        "--runs",
        "3",
        "--out",
        str(out),
        timeout=300,
    )
    profile = json.loads(out.read_text())
    models = profile["results"]["8"]
    assert profile["batch"] == 3 and "batch 3; ms per call" in result.stdout
    assert set(models) == {"plain int8 dynamic", "b int8 faithful"}
    assert "DynamicQuantizeMatMul" in models["plain int8 dynamic"]["ops"]
    assert "MatMulIntegerToFloat" in models["b int8 faithful"]["ops"]
    assert all(ms >= 0 for row in models.values() for ms in row["ops"].values())
    assert all(sum(row["ops"].values()) > 0 and row["wall_ms"] > 0 for row in models.values())
    assert "| **all kernels** |" in result.stdout and "| wall, unprofiled p50 |" in result.stdout


def test_serve_load_script_runs_end_to_end(tmp_path, seqcls_bundle):
    """The load benchmark against a real server on 127.0.0.1, two small levels: every answer accounted for."""
    bundle = Path(shutil.copytree(seqcls_bundle, tmp_path / "bundle"))
    quantize_bundle(bundle, QuantizationConfig(min_agreement=0.0))
    data = tmp_path / "data"
    data.mkdir()
    for lang, text in (("deu", "Guten Morgen.\nWie geht es dir?\n"), ("fra", "Bonjour.\nÇa va ?\n")):
        (data / f"{lang}.txt").write_text(text * 4, encoding="utf-8")
    out = tmp_path / "out"
    script(
        "serve_load.py",
        str(bundle),
        "--data",
        str(data),
        "--per-group",
        "8",
        "--concurrency",
        "1,4",
        "--warmup",
        "2",
        "--out",
        str(out),
        timeout=600,
    )
    assert list(out.glob("*.json")) and list(out.glob("*.png"))


def test_serve_memory_script_measures_head_and_window(tmp_path, seqcls_bundle):
    text = tmp_path / "text.txt"
    text.write_text("Guten Morgen, wie geht es dir heute? " * 50, encoding="utf-8")
    figures = tmp_path / "serve_memory.json"
    result = script(
        "serve_memory.py",
        str(seqcls_bundle),
        "--text",
        str(text),
        "--clients",
        "2",
        "--megabytes",
        "0.05",
        "--json",
        str(figures),
        timeout=300,
    )
    rows = json.loads(figures.read_text())["rows"]
    assert [row["truncation"] for row in rows] == ["head", "window"]
    for row in rows:  # CPU time is counted in clock ticks: a light request may read 0 on a fast machine
        assert 0 < row["idle_rss_mb"] <= row["peak_rss_mb"] and row["cpu_s_per_request"] >= 0
    assert rows[0]["statuses"] == {"200": 2} and sum(rows[1]["statuses"].values()) == 2
    assert "| head |" in result.stdout
