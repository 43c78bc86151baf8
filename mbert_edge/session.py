"""The shared base of the task classes: one bundle, one ONNX Runtime session, one tokenizer.

Kept deliberately small (after fastembed's runtime): task classes add only how a text's windows become
its result. Everything here is read-only after construction, so one object serves many threads.
"""
from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from .batching import padded_inputs, plan_batches
from .bundle import TOKENIZER_NAME, Bundle
from .cpus import available_cpus, cpu_flags, int8_is_fast
from .errors import BundleError
from .integrity import check_graph, check_tokenizer, open_session
from .textinput import as_text_list, encodable

TRUNCATIONS = ("head", "window")
Result = TypeVar("Result")


def configure_tokenizer(tokenizer: Tokenizer, max_length: int, stride: int = 0) -> Tokenizer:
    """Truncate at the bundle's max length, keeping the rest as overlapping windows of `stride` shared
    tokens (`Encoding.overflowing`); no padding: batches are padded by `batching.padded_inputs`."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length, stride=stride)
    return tokenizer


def session_options(intra_op_threads: int | None = None, inter_op_threads: int = 1) -> ort.SessionOptions:
    """Session options set deliberately: intra-op threads = usable cores, one inter-op thread, all graph
    optimisations on (the fused graph still benefits from ORT's own layout and constant folding).
    The memory arena stays on (it reuses buffers across calls); memory patterns are off (planned and cached
    per input shape, which varied text lengths rarely repeat); the bucketed batch shapes bound memory."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads or available_cpus()
    options.inter_op_num_threads = inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False
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
    """Loads a bundle of one task and runs texts through it in length-bucketed batches."""

    task: ClassVar[str | None] = None  # None: any task (raw outputs only, as accuracy reports need)
    default_truncation: ClassVar[str] = "window"

    def __init__(
        self,
        path: str | Path,
        precision: str = "auto",
        *,
        stride: int | None = None,
        max_batch_tokens: int = 8192,
        intra_op_threads: int | None = None,
        inter_op_threads: int = 1,
        options: ort.SessionOptions | None = None,
        verify_hashes: bool = True,
        model_path: str | Path | None = None,
    ) -> None:
        """`stride`: tokens shared by consecutive windows of a long text (default a quarter of the max
        length). `max_batch_tokens`: cap on padded tokens per batch, which bounds activation memory.
        `model_path` runs another ONNX file with this bundle's tokenizer and manifest: how a candidate
        model is evaluated before it joins the bundle."""
        self.bundle = Bundle.open(path)
        if self.task is not None and self.bundle.task != self.task:
            raise BundleError(
                f"bundle {self.bundle.path} is a {self.bundle.task} bundle, not {self.task}; "
                "load it with the class for its task (mbert_edge.load picks it)"
            )
        self.precision = self.bundle.resolve_precision(precision)
        self.bundle.check_files_present()
        manifest = self.bundle.manifest
        self.max_length: int = manifest["max_length"]
        if max_batch_tokens < self.max_length:
            raise ValueError(f"max_batch_tokens must be at least the max length {self.max_length}, "
                             f"got {max_batch_tokens}")
        self.max_batch_tokens = max_batch_tokens
        model_file = self.bundle.models[self.precision]
        self.model_path = Path(model_path) if model_path else self.bundle.file(model_file)
        checked = [TOKENIZER_NAME] + ([] if model_path else self.bundle.model_files(model_file))
        saved = manifest.get("runtime", {}).get("intra_op_threads")  # from `mbert-edge bench --save`
        if intra_op_threads is None and saved:
            intra_op_threads = min(saved, available_cpus())
        # Hashing the files, building the session and parsing the tokenizer take similar times and mostly
        # release the GIL: side by side they cut the mBERT INT8 cold start by about 0.2 s. A file that fails
        # its hash is reported before anything else.
        with ThreadPoolExecutor(max_workers=2) as pool:
            hashed = pool.submit(lambda: [self.bundle.verify_file(name) for name in checked]) if verify_hashes else None
            session = pool.submit(open_session, self.model_path,
                                  options or session_options(intra_op_threads, inter_op_threads))
            try:
                tokenizer = check_tokenizer(self.bundle.file(TOKENIZER_NAME), manifest)
            finally:
                if hashed is not None:
                    hashed.result()
        self.session = session.result()
        content = self.max_length - tokenizer.num_special_tokens_to_add(False)  # tokens per window
        self.stride = self.max_length // 4 if stride is None else stride
        if not 0 <= self.stride < content:
            raise ValueError(f"stride must be between 0 and {content - 1} for max length {self.max_length}, "
                             f"got {self.stride}")
        self.tokenizer = configure_tokenizer(tokenizer, self.max_length, self.stride)
        self.pad_id: int = manifest["special_tokens"]["pad"]["id"]
        self._trimmed_unk_id: int | None = manifest["special_tokens"]["unk"]["id"] if manifest.get("trim") else None
        self._warned_unknown = False
        self.input_names = [i.name for i in self.session.get_inputs()]
        check_graph(self.session, self.model_path, manifest)
        if self.precision == "int8":
            _warn_if_int8_is_slow()

    @classmethod
    def from_bundle(cls, path: str | Path, **kwargs: Any) -> "BundleModel":
        """Load the bundle at `path` (same arguments as the constructor)."""
        return cls(path, **kwargs)

    def _windows(self, texts: list[str], truncation: str | None) -> list[list[Encoding]]:
        """Each text's token windows: just the first `max_length` tokens ("head"), or all of the text in
        windows overlapping by `stride` tokens ("window"); None is the task's default, and a text cut
        by a default "head" is warned about (asking for "head" explicitly is not)."""
        if truncation not in (None, *TRUNCATIONS):
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
        encodings = self.tokenizer.encode_batch([encodable(t) for t in texts])
        if self._trimmed_unk_id is not None and not self._warned_unknown:
            self._check_unknown_rate(encodings)
        if (truncation or self.default_truncation) == "head":
            if truncation is None and any(e.overflowing for e in encodings):
                warnings.warn(
                    f"some texts are longer than {self.max_length} tokens and were cut to their first "
                    f"{self.max_length}; pass truncation='window' to read them whole",
                    UserWarning,
                    stacklevel=4,
                )
            return [[e] for e in encodings]
        return [[e, *e.overflowing] for e in encodings]

    def _check_unknown_rate(self, encodings: list[Encoding]) -> None:
        """Count [UNK] in this call's tokens; warn once per model when more than 5% are unknown, the sign of
        text outside the languages a trimmed vocabulary kept."""
        ids = [i for e in encodings for i in e.ids]
        unknown = ids.count(self._trimmed_unk_id)
        if unknown > 0.05 * len(ids):
            self._warned_unknown = True
            warnings.warn(
                f"{unknown} of {len(ids)} tokens in this call are unknown to the trimmed vocabulary of "
                f"{self.bundle.path} (kept: {self.bundle.manifest['trim'].get('scripts')}): the text is likely in "
                "a language it dropped; use the untrimmed bundle for it",
                UserWarning,
                stacklevel=5,
            )

    def _run(self, windows: list[Encoding], batch_size: int) -> list[np.ndarray]:
        """The graph's first output for each window, in input order: a vector for sequence-level tasks,
        a (real tokens, labels) matrix for token-level ones (padding removed)."""
        results: list[np.ndarray] = [np.empty(0)] * len(windows)
        lengths = [len(w) for w in windows]
        for indices, width in plan_batches(lengths, self.max_length, batch_size, self.max_batch_tokens):
            batch = [windows[i] for i in indices]
            (output,) = self.session.run(None, padded_inputs(batch, width, self.input_names, self.pad_id))[:1]
            for row, index in zip(output, indices):
                results[index] = row[: lengths[index]] if row.ndim == 2 else row
        return results

    def _per_text(self, texts: list[str], truncation: str | None, batch_size: int) -> list[tuple[list[Encoding], list[np.ndarray]]]:
        """(windows, outputs) of each text: all windows of all texts are batched together."""
        windows = self._windows(texts, truncation)
        outputs = self._run([w for group in windows for w in group], batch_size)
        bounds = list(itertools.accumulate((len(group) for group in windows), initial=0))
        return [(group, outputs[a:b]) for group, a, b in zip(windows, bounds, bounds[1:])]

    def raw_outputs(self, texts: str | Sequence[str], batch_size: int = 32) -> list[np.ndarray]:
        """The graph's output for each text's first window, without padding. Used by accuracy reports."""
        items, _ = as_text_list(texts)
        return self._run([group[0] for group in self._windows(items, "head")], batch_size)

    @staticmethod
    def _stream(run: Callable[[list[str]], Sequence[Result]], texts: Iterable[str], chunk_size: int) -> Iterator[Result]:
        """Results of `run` one by one, in input order, reading `texts` `chunk_size` at a time: memory stays
        bounded by the chunk, however many texts (a generator or a file) come in."""
        if isinstance(texts, (str, bytes, bytearray)) or not isinstance(texts, Iterable):
            raise TypeError(f"texts must be an iterable of str, got {type(texts).__name__}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        source = iter(texts)
        for first in itertools.count(0, chunk_size):
            chunk = list(itertools.islice(source, chunk_size))
            if not chunk:
                return
            as_text_list(chunk, first)
            yield from run(chunk)
