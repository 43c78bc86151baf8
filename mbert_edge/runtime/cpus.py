"""How many CPU cores this process may really use (affinity mask and cgroup quota, not the host's count)."""

from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs granted by the cgroup CPU quota (v2 `cpu.max` or v1 `cfs_quota_us`), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """Cores usable by this process: the affinity mask, capped by a cgroup quota (rounded up, at least 1)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return count


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """Instruction-set flags that decide INT8 speed: avx2, avx512_vnni, avx_vnni, amx_int8, asimddp on ARM, and
    avx512_bf16 (OpenVINO's CPU plugin then runs FP32 models in bf16 by default)."""
    import platform

    wanted = {"avx2", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "asimddp"}
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    words: set[str] = set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            words.update(line.split(":", 1)[-1].split())
    found = words & wanted
    if platform.machine().lower() in ("arm64", "aarch64"):
        found.add("arm64")
    return found


def int8_preset(flags: set[str]) -> str:
    """The quantization preset for a CPU: VNNI (x86) or dot-product (ARM) make INT8 fast; AVX2 alone
    needs `reduce_range` to avoid saturation in its u8*s8 instruction sequence."""
    if "avx512_vnni" in flags:
        return "avx512-vnni"
    if "avx_vnni" in flags:
        return "avx-vnni"
    if "arm64" in flags:
        return "arm64"
    return "avx2"


def int8_is_fast(flags: set[str]) -> bool:
    """INT8 beats FP32 with VNNI, AVX2's u8*s8 multiply-add, or ARM dot-product instructions; without
    them (SSE-only x86, older ARM) ONNX Runtime's INT8 kernels are slower than FP32."""
    return bool(flags & {"avx512_vnni", "avx_vnni", "avx2", "asimddp"})


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's marketing name (for benchmark reports), or the platform's processor string."""
    import platform

    try:
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
