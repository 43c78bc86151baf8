"""CPU facts the runtime acts on: usable cores (affinity, cgroup quota) and the slow-INT8 warning."""

from __future__ import annotations

import shutil
import warnings

import pytest

from mbert_edge.runtime import cpus, runner
from mbert_edge.runtime.cpus import _cgroup_quota, available_cpus


def test_cgroup_quota_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert _cgroup_quota(tmp_path) == 3.0


def test_available_cpus_respects_quota(monkeypatch):
    monkeypatch.setattr(cpus, "_cgroup_quota", lambda: 0.5)
    assert available_cpus() == 1


def test_int8_on_a_slow_cpu_warns_once(tmp_path, seqcls_bundle, monkeypatch):
    from mbert_edge import Classifier
    from mbert_edge.quantization import QuantizationConfig
    from mbert_edge.quantize.pipeline import quantize_bundle

    bundle = shutil.copytree(seqcls_bundle, tmp_path / "b")
    quantize_bundle(bundle, QuantizationConfig(min_agreement=0.0))
    monkeypatch.setattr(runner, "cpu_flags", lambda: set())
    runner._warn_if_int8_is_slow.cache_clear()
    with pytest.warns(RuntimeWarning, match="slower than FP32"):
        Classifier(bundle)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Classifier(bundle)  # once per process
    runner._warn_if_int8_is_slow.cache_clear()
