"""Prove the ONNX graph computes what PyTorch computes, per language, on padded batches of real text (and of\npairs of texts, for models that read two)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mbert_edge.bundle import LanguageParity, Parity
from mbert_edge.runtime import Runner
from mbert_edge.textdata import TextSet


def parity_report(
    wrapper: torch.nn.Module,
    runner: Runner,
    textset: TextSet,
    batch_size: int = 32,
    advance: Callable[[int], None] = lambda n: None,
) -> Parity:
    """Max and mean absolute difference of the outputs, per language and overall, on the runtime's own padded
    batches (real tokens only for token-level outputs, so padding positions do not count)."""
    languages: dict[str, LanguageParity] = {}
    for lang, sentences in textset.texts.items():
        windows = runner.first_windows(sentences)
        diffs = []
        for indices, feed in runner.batches(windows, batch_size):
            with torch.inference_mode():
                expected = wrapper(*(torch.from_numpy(feed[n]) for n in runner.input_names)).numpy()
            diff = np.abs(runner.session.run(None, feed)[0] - expected)
            if diff.ndim == 3:
                diff = diff[feed["attention_mask"].astype(bool)]
            diffs.append(diff.ravel())
            advance(len(indices))
        joined = np.concatenate(diffs)
        languages[lang] = LanguageParity(len(sentences), float(joined.max()), float(joined.mean()))
    return Parity(max(v.max_abs_diff for v in languages.values()), languages)
