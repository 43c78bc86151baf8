"""Error-compensating rounding of int8 weights (GPTQ, Frantar et al. 2022) for the faithful method.

Rounding each weight to the nearest level ignores which input channels the activations actually use;
GPTQ rounds one input row at a time and pushes the rounding error onto the rows not yet rounded, weighted
by the inverse of the activations' second moment H = X^T X, which minimises ||X W - X W_q||. ONNX Runtime's
quantizers only offer GPTQ for 4-bit MatMulNBits (through Intel Neural Compressor), not for the
per-channel int8 weights MatMulInteger takes, so it is written here (numpy, about 40 lines).
"""
from __future__ import annotations

import numpy as np

BLOCK = 128  # rows rounded together before the trailing rows are updated (speed only, same result)


def column_scales(weight: np.ndarray, limit: int) -> np.ndarray:
    """Symmetric per-output-column scales: the largest |w| of each column maps to `limit`."""
    return np.maximum(np.abs(weight).max(axis=0), 1e-12) / limit


def round_nearest(weight: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(integer weights in [-limit, limit], per-column scales) by plain rounding."""
    scale = column_scales(weight, limit)
    return np.clip(np.round(weight / scale), -limit, limit), scale


def round_gptq(weight: np.ndarray, hessian: np.ndarray, limit: int, damping: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(integer weights, per-column scales) for `x @ weight` ([K, N]) given H = sum of x^T x ([K, K]).

    `damping` adds that fraction of H's mean diagonal (measured: 0.1 beats 0.01 on real calibration text,
    whose H is near singular for rarely used channels). Input channels never active get zero weight rows.
    """
    work = weight.astype(np.float64).copy()
    h = hessian.astype(np.float64).copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    work[dead] = 0.0
    h[np.diag_indices_from(h)] += damping * np.mean(np.diag(h))
    scale = column_scales(work, limit)
    # Upper Cholesky factor of H^-1: row i holds how row i's error spreads onto rows i+1.. .
    inverse = np.linalg.cholesky(np.linalg.inv(h)).T
    levels = np.zeros_like(work)
    rows = work.shape[0]
    for start in range(0, rows, BLOCK):
        stop = min(start + BLOCK, rows)
        block, errors = work[start:stop].copy(), np.zeros((stop - start, work.shape[1]))
        local = inverse[start:stop, start:stop]
        for i in range(stop - start):
            levels[start + i] = np.clip(np.round(block[i] / scale), -limit, limit)
            errors[i] = (block[i] - levels[start + i] * scale) / local[i, i]
            block[i:] -= np.outer(local[i, i:], errors[i])
        work[stop:] -= inverse[start:stop, stop:].T @ errors
    return levels, scale
