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


def column_scales(weight: np.ndarray, limit: int, pair_limit: int | None = None) -> np.ndarray:
    """Symmetric per-output-column scales: the largest |w| of each column maps to `limit`; with `pair_limit`,
    also the largest |w_2i| + |w_2i+1|, so that pairs fit their limit by rounding rather than by clipping
    (clipping multiplies the weight error: benchmarks/README.md, "Figures behind the defaults")."""
    magnitude = np.abs(weight)
    scale = magnitude.max(axis=0) / limit
    if pair_limit is not None:
        pairs = magnitude[0::2][: len(magnitude[1::2])] + magnitude[1::2]
        scale = np.maximum(scale, pairs.max(axis=0) / pair_limit)
    return np.maximum(scale, 1e-12 / limit)


def pair_bounds(previous: np.ndarray, pair_limit: int | None, row: int, limit: int) -> np.ndarray | int:
    """How far row `row`'s levels may go: `limit`, or for the second row of each pair (2i, 2i+1) what
    `pair_limit` leaves after the first row's |level| (see faithful.WEIGHT_FORMATS, "p8")."""
    return limit if pair_limit is None or row % 2 == 0 else np.minimum(limit, pair_limit - np.abs(previous))


def round_nearest(weight: np.ndarray, limit: int, pair_limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(integer weights in [-limit, limit], per-column scales) by plain rounding; with `pair_limit`, each
    pair of rows (2i, 2i+1) also keeps |level_2i| + |level_2i+1| <= pair_limit."""
    scale = column_scales(weight, limit, pair_limit)
    levels = np.clip(np.round(weight / scale), -limit, limit)
    if pair_limit is not None:
        bound = pair_bounds(levels[0::2][: len(levels[1::2])], pair_limit, 1, limit)
        levels[1::2] = np.clip(levels[1::2], -bound, bound)
    return levels, scale


def round_gptq(
    weight: np.ndarray, hessian: np.ndarray, limit: int, damping: float = 0.1, pair_limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(integer weights, per-column scales) for `x @ weight` ([K, N]) given H = sum of x^T x ([K, K]);
    `pair_limit` as in `round_nearest` (the rows after a clipped one absorb its error, as for rounding).

    `damping` adds that fraction of H's mean diagonal (real calibration text leaves H near singular for rarely
    used channels; 0.1 beat 0.01, benchmarks/README.md). Input channels never active get zero weight rows.
    """
    work = weight.astype(np.float64).copy()
    h = hessian.astype(np.float64).copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    work[dead] = 0.0
    h[np.diag_indices_from(h)] += damping * np.mean(np.diag(h))
    scale = column_scales(work, limit, pair_limit)
    # Upper Cholesky factor of H^-1: row i holds how row i's error spreads onto rows i+1.. .
    inverse = np.linalg.cholesky(np.linalg.inv(h)).T
    levels = np.zeros_like(work)
    rows = work.shape[0]
    for start in range(0, rows, BLOCK):
        stop = min(start + BLOCK, rows)
        block, errors = work[start:stop].copy(), np.zeros((stop - start, work.shape[1]))
        local = inverse[start:stop, start:stop]
        for i in range(stop - start):  # BLOCK is even: a pair never straddles two blocks
            bound = pair_bounds(levels[start + i - 1], pair_limit, start + i, limit)
            levels[start + i] = np.clip(np.round(block[i] / scale), -bound, bound)
            errors[i] = (block[i] - levels[start + i] * scale) / local[i, i]
            block[i:] -= np.outer(local[i, i:], errors[i])
        work[stop:] -= inverse[start:stop, stop:].T @ errors
    return levels, scale
