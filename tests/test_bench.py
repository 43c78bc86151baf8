"""`mbert-edge bench` on a tiny model with few repetitions: well-formed JSON, Markdown and PNG (no timing
is asserted: speed is checked by reading the figures, not by tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import quick_bench, run_cli

from mbert_edge.quantization import QuantizationConfig
from mbert_edge.quantize.pipeline import quantize_bundle

pytestmark = pytest.mark.slow  # subprocesses, servers, Ray or fresh venvs: pytest -m 'not slow' skips them

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_bench_writes_every_output(tmp_path, seqcls_bundle):
    bundle = Path(shutil.copytree(seqcls_bundle, tmp_path / "b"))
    quantize_bundle(bundle, QuantizationConfig(min_agreement=0.0))
    result = quick_bench(bundle, "16,64,256", "4,16", "--save", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "## Batch-1 latency" in result.stdout and "Recommended: `intra_op_threads=" in result.stdout
    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert set(report["variants"]) == {"fp32", "int8"}
    for variant in report["variants"].values():
        assert set(variant["latency_by_length"]) == {"16", "64", "128"}  # 256 capped at the max length 128
        for row in [*variant["latency_by_length"].values(), variant["end_to_end"]]:
            assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["runs"] >= 2
        assert set(variant["throughput"]) == {"4", "16"}
        assert variant["throughput"]["16"]["tokens_per_s"] > variant["throughput"]["16"]["sentences_per_s"] > 0
        assert variant["cold_start"]["seconds"] > 0 and variant["cold_start"]["peak_rss_mb"] > 10
    sweep = report["thread_sweep"]
    assert sweep["precision"] == "int8" and str(sweep["recommended_intra_op_threads"]) in sweep["threads"]
    manifest = json.loads((bundle / "mbert_edge.json").read_text())
    assert manifest["runtime"]["intra_op_threads"] == sweep["recommended_intra_op_threads"]
    assert "intra_op_threads" in run_cli("info", str(bundle)).stdout
    assert "| int8 |" in (tmp_path / "out" / "bench.md").read_text()
    for name in ("latency.png", "throughput.png"):
        assert (tmp_path / "out" / name).read_bytes().startswith(PNG_MAGIC)


def test_bench_errors_are_one_line(tmp_path, seqcls_bundle):
    missing_int8 = run_cli("bench", str(seqcls_bundle), "--precision", "int8")
    assert missing_int8.returncode == 1 and "no int8 model" in missing_int8.stderr
    bad_lengths = run_cli("bench", str(seqcls_bundle), "--lengths", "16,abc")
    assert bad_lengths.returncode == 2 and "comma-separated integers" in bad_lengths.stderr
    for option, value, message in (
        ("--lengths", "0", "'--lengths': expected positive integers, got '0'"),
        ("--batch-sizes", "1,-2", "'--batch-sizes': expected positive integers"),
    ):
        refused = run_cli("bench", str(seqcls_bundle), option, value)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
