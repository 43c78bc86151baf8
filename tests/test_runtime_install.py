"""The slim install: `pip install mbert-edge` (onnxruntime, tokenizers, numpy, click; no torch, transformers or
onnx) runs the inference commands on a bundle, and answers the tooling commands with one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from mbert_edge.quantization import QuantizationConfig
from mbert_edge.quantize.pipeline import quantize_bundle

pytestmark = pytest.mark.slow  # subprocesses, servers, Ray or fresh venvs: pytest -m 'not slow' skips them

SKIPPED = (".git", "tests", "benchmarks", "__pycache__", "*.egg-info", "build", ".venv")


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    """A fresh venv with the project installed without extras (from a copy of the sources, so the build
    leaves nothing in the repo)."""
    root = tmp_path_factory.mktemp("runtime-install")
    source = shutil.copytree(REPO_ROOT, root / "source", ignore=shutil.ignore_patterns(*SKIPPED))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)], check=True, timeout=900
    )
    return venv


def slim(venv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "mbert-edge"), *args], capture_output=True, text=True, timeout=600, cwd=venv
    )


def test_the_slim_install_has_no_tooling_libraries(runtime_venv):
    for heavy in ("torch", "transformers", "onnx"):
        found = subprocess.run([str(runtime_venv / "bin" / "python"), "-c", f"import {heavy}"], capture_output=True)
        assert found.returncode != 0, f"{heavy} is installed by `pip install mbert-edge`"


def test_inference_commands_run_on_the_slim_install(runtime_venv, tmp_path, seqcls_bundle):
    bundle = shutil.copytree(seqcls_bundle, tmp_path / "bundle")
    quantize_bundle(bundle, QuantizationConfig(min_agreement=0.0))
    info = slim(runtime_venv, "info", str(bundle))
    assert info.returncode == 0 and "int8         kept: faithful (batch-invariant)" in info.stdout, info.stderr
    predicted = slim(runtime_venv, "predict", str(bundle), "Guten Morgen", "صباح الخير")
    assert predicted.returncode == 0 and len(predicted.stdout.splitlines()) == 2, predicted.stderr
    verified = slim(runtime_venv, "verify", str(bundle))
    assert verified.returncode == 0 and "**overall**" in verified.stdout, verified.stderr
    bench = slim(
        runtime_venv,
        "bench",
        str(bundle),
        "--lengths",
        "16",
        "--batch-sizes",
        "8",
        "--runs",
        "2",
        "--max-seconds",
        "0",
        "--no-cold-start",
        "--no-threads",
    )
    assert bench.returncode == 0 and "## Batch-1 latency" in bench.stdout, bench.stderr


@pytest.mark.parametrize("command", [["quantize", "{bundle}"], ["export", "x", "{out}"], ["demo"]])
def test_tooling_commands_name_the_extra(runtime_venv, tmp_path, seqcls_bundle, command):
    args = [a.format(bundle=seqcls_bundle, out=tmp_path / "out") for a in command]
    result = slim(runtime_venv, *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: this command needs the [export] extra ({result.stderr.split('(')[1].split(')')[0]}): "
        "pip install 'mbert-edge[export]'"
    ]
