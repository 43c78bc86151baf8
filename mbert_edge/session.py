"""The shared base of the task classes: one bundle, one ONNX Runtime session, one tokenizer.

Kept deliberately small (after fastembed's runtime): task classes add only their post-processing.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from .bundle import TOKENIZER_NAME, Bundle
from .cpus import available_cpus, cpu_flags, int8_is_fast
from .errors import BundleError


def as_text_list(texts: str | Sequence[str]) -> tuple[list[str], bool]:
    """Normalise `texts` to a list; the flag says a single string came in (and a single result goes out)."""
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] must be str, got {type(text).__name__}")
    return list(texts), False


def configure_tokenizer(tokenizer: Tokenizer, max_length: int, pad: dict[str, Any]) -> Tokenizer:
    """Truncate at the bundle's max length and pad each batch to its longest member (not to a fixed size)."""
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=pad["id"], pad_token=pad["token"])
    return tokenizer


def model_inputs(encodings: list[Encoding], input_names: list[str]) -> dict[str, np.ndarray]:
    """The ONNX feed for a padded batch: only the inputs the graph declares, as int64."""
    columns = {
        "input_ids": lambda e: e.ids,
        "attention_mask": lambda e: e.attention_mask,
        "token_type_ids": lambda e: e.type_ids,
    }
    return {name: np.asarray([columns[name](e) for e in encodings], dtype=np.int64) for name in input_names}


def session_options(intra_op_threads: int | None = None, inter_op_threads: int = 1) -> ort.SessionOptions:
    """Session options set deliberately: intra-op threads = usable cores, one inter-op thread, all graph
    optimisations on (the fused graph still benefits from ORT's own layout and constant folding)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads or available_cpus()
    options.inter_op_num_threads = inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


@functools.cache
def _warn_if_int8_is_slow() -> None:
    """Once per process: INT8 on a CPU without fast integer dot products is slower than FP32."""
    if not int8_is_fast(cpu_flags()):
        warnings.warn(
            "this CPU has no VNNI, AVX2 or ARM dot-product instructions: the INT8 model will likely run "
            "slower than FP32 here; load with precision='fp32'",
            RuntimeWarning,
            stacklevel=4,
        )


class BundleModel:
    """Loads a bundle of one task and runs batches of text through it."""

    task: ClassVar[str | None] = None  # None: any task (raw outputs only, as accuracy reports need)

    def __init__(
        self,
        path: str | Path,
        precision: str = "auto",
        *,
        intra_op_threads: int | None = None,
        inter_op_threads: int = 1,
        options: ort.SessionOptions | None = None,
        verify_hashes: bool = True,
        model_path: str | Path | None = None,
    ) -> None:
        """`model_path` runs another ONNX file with this bundle's tokenizer and manifest: how a candidate
        model is evaluated before it joins the bundle."""
        self.bundle = Bundle.open(path)
        if self.task is not None and self.bundle.task != self.task:
            raise BundleError(
                f"bundle {self.bundle.path} is a {self.bundle.task} bundle, not {self.task}; "
                "load it with the class for its task"
            )
        self.precision = self.bundle.resolve_precision(precision)
        locate = self.bundle.verify_file if verify_hashes else self.bundle.file
        manifest = self.bundle.manifest
        self.max_length: int = manifest["max_length"]
        self.tokenizer = configure_tokenizer(
            Tokenizer.from_file(str(locate(TOKENIZER_NAME))), self.max_length, manifest["special_tokens"]["pad"]
        )
        self.model_path = Path(model_path) if model_path else locate(self.bundle.models[self.precision])
        self.session = ort.InferenceSession(
            str(self.model_path),
            options or session_options(intra_op_threads, inter_op_threads),
            providers=["CPUExecutionProvider"],
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        if self.precision == "int8":
            _warn_if_int8_is_slow()

    @classmethod
    def from_bundle(cls, path: str | Path, **kwargs: Any) -> "BundleModel":
        """Load the bundle at `path` (same arguments as the constructor)."""
        return cls(path, **kwargs)

    def _batches(self, texts: list[str], batch_size: int) -> Iterator[tuple[list[Encoding], np.ndarray]]:
        """Tokenise and run `texts` in batches padded to their longest member; yields the first output."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(texts), batch_size):
            encodings = self.tokenizer.encode_batch(texts[start : start + batch_size])
            (output,) = self.session.run(None, model_inputs(encodings, self.input_names))[:1]
            yield encodings, output

    def _stacked(self, texts: str | Sequence[str], batch_size: int, width: int) -> np.ndarray:
        """Sequence-level outputs stacked to (n, width); one row for a single string, (0, width) for []."""
        items, single = as_text_list(texts)
        if not items:
            return np.zeros((0, width), dtype=np.float32)
        rows = np.concatenate([out for _, out in self._batches(items, batch_size)])
        return rows[0] if single else rows

    def raw_outputs(self, texts: str | Sequence[str], batch_size: int = 32) -> list[np.ndarray]:
        """The graph's output for each text, without padding: a vector per text for sequence-level tasks,
        a (tokens, labels) matrix for token-level ones. Used by accuracy reports."""
        items, _ = as_text_list(texts)
        results: list[np.ndarray] = []
        for encodings, output in self._batches(items, batch_size):
            for row, encoding in zip(output, encodings):
                results.append(row[: sum(encoding.attention_mask)] if row.ndim == 2 else row)
        return results
