"""Prove the ONNX graph computes what PyTorch computes, per language, on padded batches of real text."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from tokenizers import Tokenizer

from mbert_edge.batching import padded_inputs
from mbert_edge.session import configure_tokenizer, session_options
from mbert_edge.textdata import TextSet


def parity_report(
    wrapper: torch.nn.Module,
    onnx_path: Path,
    tokenizer: Tokenizer,
    pad: dict[str, Any],
    max_length: int,
    textset: TextSet,
    batch_size: int = 32,
    advance: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Max and mean absolute difference of the outputs, per language and overall (real tokens only for
    token-level outputs, so padding positions do not count)."""
    tokenizer = configure_tokenizer(Tokenizer.from_str(tokenizer.to_str()), max_length)
    session = ort.InferenceSession(str(onnx_path), session_options(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    languages: dict[str, dict[str, float]] = {}
    for lang, sentences in textset.texts.items():
        sentences = sorted(sentences, key=len)  # similar lengths share a batch: less padding, faster
        diffs = []
        for start in range(0, len(sentences), batch_size):
            encodings = tokenizer.encode_batch(sentences[start : start + batch_size])
            feed = padded_inputs(encodings, max(map(len, encodings)), names, pad["id"])
            with torch.inference_mode():
                expected = wrapper(*(torch.from_numpy(feed[n]) for n in names)).numpy()
            actual = session.run(None, feed)[0]
            diff = np.abs(actual - expected)
            if diff.ndim == 3:
                diff = diff[feed["attention_mask"].astype(bool)]
            diffs.append(diff.ravel())
            advance(len(encodings))
        joined = np.concatenate(diffs)
        languages[lang] = {"sentences": len(sentences), "max_abs_diff": float(joined.max()),
                           "mean_abs_diff": float(joined.mean())}
    overall = max(v["max_abs_diff"] for v in languages.values())
    return {"max_abs_diff": overall, "languages": languages}
