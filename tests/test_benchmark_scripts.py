"""The peers benchmark script on a tiny model with a couple of repetitions: it runs end to end and writes
well-formed JSON, Markdown and PNG (its timings are read by people, never asserted)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from mbert_edge.quantize.pipeline import quantize_bundle

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_peers_script(tmp_path, seqcls_checkpoint, seqcls_bundle):
    bundle = Path(shutil.copytree(seqcls_bundle, tmp_path / "bundle"))
    quantize_bundle(bundle, min_agreement=0.0)
    data = tmp_path / "data"
    data.mkdir()
    (data / "deu.txt").write_text("Guten Morgen.\nWie geht es dir?\nDas ist gut.\n", encoding="utf-8")
    (data / "fra.txt").write_text("Bonjour.\nÇa va ?\n", encoding="utf-8")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "peers.py", str(seqcls_checkpoint), str(bundle), "--data", str(data), "--runs", "2",
         "--per-group", "2", "--out", str(out)],
        cwd=BENCHMARKS, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "peers.json").read_text())
    assert set(report["variants"]) == {"mbert-edge FP32", "mbert-edge INT8 plain",
                                       "transformers pipeline, PyTorch FP32", "transformers pipeline, PyTorch INT8"}
    assert report["data"]["sentences"] == 4 and report["roofline_gops"]["int8"] > 0
    for row in report["variants"].values():
        assert row["end_to_end"]["p50_ms"] > 0 and row["sentences_per_s"] > 0 and row["cold_start"]["seconds"] > 0
    assert "| mbert-edge INT8 plain |" in (out / "peers.md").read_text()
    assert (out / "peers.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
