"""The inference runner: one ONNX Runtime session and the bundle's tokenizer. It cuts texts into token windows,
batches them by length and runs them. The task classes, export's parity proof, quantize's calibration and
candidate models, and the benchmarks all run graphs through it, so there is one way to feed a graph.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, cast

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from ..bundle import TOKENIZER_NAME, Bundle
from ..errors import WindowError
from ..tasks import PAIR_TRUNCATIONS, TASKS, TRUNCATIONS
from .batching import padded_inputs, plan_batches
from .cpus import available_cpus, cpu_flags, int8_is_fast
from .integrity import check_graph, check_tokenizer, open_session
from .textinput import TextInput, check_count, encodable

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's own from Python 3.11; for the type checker only

DEFAULT_MAX_TEXT_TOKENS = 131_072  # a text read in windows may span this many tokens unless `max_windows` says
HEAD_CHARS_PER_TOKEN = 8  # the first guess of a head window's characters per token; doubled until it holds
COUNT_CHUNK = 65_536  # characters tokenized at a time when a text's tokens are only counted
_LAST_WORD = re.compile(r"\s+\S*\Z")


def session_options(
    intra_op_threads: int | None = None, inter_op_threads: int = 1, config: Mapping[str, str] | None = None
) -> ort.SessionOptions:
    """Session options set deliberately: intra-op threads = usable cores, one inter-op thread, all graph
    optimisations on (the fused graph still benefits from ORT's own layout and constant folding).
    The memory arena stays on (it reuses buffers across calls); memory patterns are off (planned and cached
    per input shape, which varied text lengths rarely repeat); the bucketed batch shapes bound memory.
    `config`: ONNX Runtime session config entries on top (e.g. the server's thread spinning off)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads or available_cpus()
    options.inter_op_num_threads = inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    return options


@functools.cache
def _warn_if_int8_is_slow() -> None:
    """Once per process: INT8 on a CPU without fast integer dot products is slower than FP32."""
    if not int8_is_fast(cpu_flags()):
        warnings.warn(
            "this CPU has no VNNI, AVX2 or ARM dot-product instructions: the INT8 model will likely run "
            "slower than FP32 here; load with precision='fp32'",
            RuntimeWarning,
            stacklevel=5,
        )


DEFAULT_MAX_BATCH_TOKENS = 8192


def checked_stride(name: str, stride: object, room: int, max_length: int) -> int:
    """`stride` when it is an int from 0 to `room` - 1: consecutive windows share these tokens, of the `room` a
    window of `max_length` holds besides its special tokens. ValueError naming `name` otherwise."""
    if isinstance(stride, bool) or not isinstance(stride, int) or not 0 <= stride < room:
        raise ValueError(
            f"{name} must be an int from 0 to {room - 1} for windows of {max_length} tokens, got {stride!r}"
        )
    return stride


class RunnerOptions(TypedDict, total=False):
    """How a bundle's model runs: the keywords of `Runner.open`, which every task class takes too.

    `stride` (default: a quarter of the max length): tokens shared by consecutive windows of a long text.
    `max_batch_tokens` (8192): cap on padded tokens per batch, which bounds activation memory.
    `max_windows` (default: as many as span 131,072 tokens): most windows a text read with truncation="window"
    may take; longer: ValueError. `intra_op_threads` (default: the bundle's `bench --save` figure, else the
    usable cores) and `inter_op_threads` (1): ONNX Runtime's threads. `options`: session options that replace
    ours; `session_config`: ONNX Runtime config entries added to ours. `verify_hashes` (True): check the loaded
    files against the manifest's sha256."""

    stride: int | None
    max_batch_tokens: int
    max_windows: int | None
    intra_op_threads: int | None
    inter_op_threads: int
    options: ort.SessionOptions | None
    session_config: Mapping[str, str] | None
    verify_hashes: bool


MAX_BATCH_TOKENS = 2**31 - 1  # what ONNX Runtime's and numpy's index types hold


def check_run_options(options: Mapping[str, object]) -> None:
    """The keywords of `Runner.open` (`RunnerOptions`), checked before any file is read: an unknown name, or a
    value of the wrong type or range, is one TypeError or ValueError naming the keyword."""
    known = list(RunnerOptions.__annotations__)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}; the loading options are {', '.join(known)}")
    for name in ("max_batch_tokens", "inter_op_threads", "max_windows", "intra_op_threads"):
        if name in options:
            check_count(name, options[name], allow_none=name in ("max_windows", "intra_op_threads"))
    if cast(int, options.get("max_batch_tokens", 0)) > MAX_BATCH_TOKENS:
        raise ValueError(f"max_batch_tokens must be at most {MAX_BATCH_TOKENS:,}, got {options['max_batch_tokens']}")
    if options.get("options") is not None and not isinstance(options["options"], ort.SessionOptions):
        raise TypeError(
            f"options must be an onnxruntime.SessionOptions or None, got {type(options['options']).__name__}"
        )
    config = options.get("session_config")
    if config is not None and not (
        isinstance(config, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in config.items())
    ):
        raise TypeError(f"session_config must be a mapping of str to str or None, got {config!r:.60}")
    if not isinstance(options.get("verify_hashes", True), bool):
        raise TypeError(f"verify_hashes must be a bool, got {type(options['verify_hashes']).__name__}")


class Runner:
    """Runs texts through one graph in length-bucketed batches. Read-only after construction: one runner
    serves many threads (ONNX Runtime runs concurrent calls on one session)."""

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        max_length: int,
        pad_id: int,
        name: str,
        *,
        stride: int | None = None,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_windows: int | None = None,
        gathered_id: int | None = None,
    ) -> None:
        """`stride`: tokens shared by consecutive windows of a long text (default a quarter of the max
        length). `gathered_id`: the graph's output rows are the positions of the inputs holding this token id
        (fill-mask's mask token), in row-major order, not one per input. `max_batch_tokens`: cap on padded tokens per batch, which bounds activation memory.
        `max_windows`: most windows one text may be read in (default: as many as span 131,072 tokens); a
        longer text is refused before it is tokenized whole. `name` says which graph this is in reports."""
        if max_batch_tokens < max_length:
            raise ValueError(f"max_batch_tokens must be at least the max length {max_length}, got {max_batch_tokens}")
        content = max_length - tokenizer.num_special_tokens_to_add(False)  # tokens per window
        self.stride = checked_stride("stride", max_length // 4 if stride is None else stride, content, max_length)
        tokenizer.no_padding()  # batches are padded by `batching.padded_inputs`
        tokenizer.enable_truncation(max_length, stride=self.stride)  # the rest: `Encoding.overflowing` windows
        self._pair_tokenizers: dict[str, Tokenizer] = {}  # a copy per pair truncation and stride, made on first use
        self.session, self.tokenizer, self.max_length, self.pad_id, self.name = (
            session,
            tokenizer,
            max_length,
            pad_id,
            name,
        )
        self.max_batch_tokens = max_batch_tokens
        self.gathered_id = gathered_id
        self.window_step = content - self.stride  # tokens from one window's start to the next's
        self.max_windows = -(-DEFAULT_MAX_TEXT_TOKENS // self.window_step) if max_windows is None else max_windows
        if self.max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {max_windows}")
        self.input_names = [i.name for i in session.get_inputs()]

    @classmethod
    def open(cls, bundle: Bundle, precision: str = "auto", **run_options: Unpack[RunnerOptions]) -> Runner:
        """The runner of a bundle's model (`precision` "auto" takes INT8 when there is one), after the load-time
        checks: files present, hashes, tokenizer and graph belong to the manifest. Intra-op threads: the
        option, else the manifest's from `mbert-edge bench --save`, else the usable cores."""
        check_run_options(run_options)
        intra_op_threads = run_options.get("intra_op_threads")
        precision = bundle.resolve_precision(precision)
        bundle.check_files_present()
        manifest = bundle.manifest
        model_file = bundle.models[precision]
        saved = manifest.runtime.intra_op_threads if manifest.runtime else None  # from `mbert-edge bench --save`
        if intra_op_threads is None and saved:
            intra_op_threads = min(saved, available_cpus())
        checked = [TOKENIZER_NAME, *bundle.model_files(model_file)]
        # Hashing the files, building the session and parsing the tokenizer take similar times and mostly
        # release the GIL: side by side they cut the mBERT INT8 cold start by about 0.2 s. A file that fails
        # its hash is reported before anything else.
        with ThreadPoolExecutor(max_workers=2) as pool:
            verify = run_options.get("verify_hashes", True)
            hashed = pool.submit(lambda: [bundle.verify_file(name) for name in checked]) if verify else None
            session = pool.submit(
                open_session,
                bundle.file(model_file),
                run_options.get("options")
                or session_options(
                    intra_op_threads, run_options.get("inter_op_threads", 1), run_options.get("session_config")
                ),
            )
            try:
                tokenizer = check_tokenizer(bundle.file(TOKENIZER_NAME), manifest)
            finally:
                if hashed is not None:
                    hashed.result()
        opened = session.result()
        check_graph(opened, bundle.file(model_file), manifest)
        if precision == "int8":
            _warn_if_int8_is_slow()
        return cls(
            opened,
            tokenizer,
            manifest.max_length,
            manifest.special_tokens["pad"].id,
            model_file,
            stride=run_options.get("stride"),
            max_batch_tokens=run_options.get("max_batch_tokens", DEFAULT_MAX_BATCH_TOKENS),
            max_windows=run_options.get("max_windows"),
            gathered_id=manifest.special_tokens["mask"].id if TASKS[manifest.task].masked else None,
        )

    @property
    def intra_op_threads(self) -> int:
        """The threads ONNX Runtime's session runs each operator on."""
        return int(self.session.get_session_options().intra_op_num_threads)

    def with_graph(self, model: str | Path | bytes, name: str) -> Runner:
        """This runner's tokenizer and settings on another graph (a file or serialized ONNX): how quantize
        runs candidate models and calibration probes before they join a bundle."""
        session = ort.InferenceSession(
            model if isinstance(model, bytes) else str(model), session_options(), providers=["CPUExecutionProvider"]
        )
        return Runner(
            session,
            self.tokenizer,
            self.max_length,
            self.pad_id,
            name,
            stride=self.stride,
            max_batch_tokens=self.max_batch_tokens,
            max_windows=self.max_windows,
            gathered_id=self.gathered_id,
        )

    def windows(self, texts: Sequence[str], truncation: str) -> list[list[Encoding]]:
        """Each text's token windows: its first `max_length` tokens ("head"), or all of it in windows
        overlapping by `stride` tokens ("window"), at most `max_windows` of them: a longer text raises
        ValueError before its windows are built."""
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
        cleaned = [encodable(t) for t in texts]
        if truncation == "head":
            return [[e] for e in self.tokenizer.encode_batch([self._first_window_prefix(t) for t in cleaned])]
        for index, text in enumerate(cleaned):
            if error := self.window_error(text):
                raise WindowError(f"text {index} is {error}; read its head (truncation='head') or raise max_windows")
        return [[e, *e.overflowing] for e in self.tokenizer.encode_batch(cleaned)]

    def pair_windows(
        self, pairs: Sequence[tuple[str, str]], truncation: str, stride: int | None = None
    ) -> list[list[Encoding]]:
        """Each pair's windows, laid out by the tokenizer's pair template (`[CLS] text [SEP] text_pair [SEP]` with
        segment ids 0 and 1 for BERT, `<s> a </s></s> b </s>` for XLM-R and RoBERTa) and cut to the max length:
        one window cut by "longest_first" (tokens from the longer text first) or "only_first" / "only_second"
        (from that text alone; ValueError when it is too short to make room), or with "window" the second text
        in windows overlapping by `stride` tokens (default: the runner's), the first text whole in each (at most
        `max_windows`)."""
        if truncation not in PAIR_TRUNCATIONS:
            raise ValueError(f"truncation of pairs must be one of {', '.join(PAIR_TRUNCATIONS)}, got {truncation!r}")
        windowed = truncation == "window"
        overlap = (self.stride if stride is None else self.pair_stride(stride)) if windowed else 0
        if windowed:
            for index, pair in enumerate(pairs):
                if error := self.window_error(pair, overlap):
                    fix = "" if error.no_room else "; cut it (truncation='only_second') or raise max_windows"
                    raise WindowError(f"pair {index}'s {error}{fix}", error.no_room)
        key = f"{truncation}:{overlap}"
        if key not in self._pair_tokenizers:
            tokenizer = Tokenizer.from_str(self.tokenizer.to_str())
            tokenizer.enable_truncation(
                self.max_length, stride=overlap, strategy="only_second" if windowed else truncation
            )
            self._pair_tokenizers[key] = tokenizer
        try:
            encodings = self._pair_tokenizers[key].encode_batch([(encodable(a), encodable(b)) for a, b in pairs])
        except Exception as exc:  # the tokenizers' own, for a text too short to cut: which pair, and why
            for index, error in enumerate(self.cut_errors(pairs, truncation)):
                if error:
                    raise WindowError(f"pair {index}'s {error}", no_room=True) from exc
            raise ValueError(
                f"truncation {truncation!r} cannot cut these pairs to {self.max_length} tokens: {exc}"
            ) from exc
        return [[e, *e.overflowing] if windowed else [e] for e in encodings]

    def pair_stride(self, stride: object, name: str = "stride") -> int:
        """`stride` for the second text of pairs read in windows (`pair_windows`), checked: an int below the
        tokens a pair's window holds besides its special tokens."""
        return checked_stride(
            name, stride, self.max_length - self.tokenizer.num_special_tokens_to_add(True), self.max_length
        )

    def cut_errors(self, pairs: Sequence[tuple[str, str]], truncation: str) -> list[WindowError | None]:
        """Per pair, why `truncation` "only_first" or "only_second" cannot cut it to `max_length` tokens (the text it
        keeps whole leaves the other no token), None when it can; the other truncations always can."""
        if truncation not in ("only_first", "only_second"):
            return [None] * len(pairs)
        texts = [encodable(t) for pair in pairs for t in pair]
        counts = [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        name = "second" if truncation == "only_first" else "first"
        specials = self.tokenizer.num_special_tokens_to_add(True)
        errors: list[WindowError | None] = []
        for first, second in zip(counts[::2], counts[1::2]):
            kept = second if truncation == "only_first" else first
            fits = first + second + specials <= self.max_length or kept + specials < self.max_length
            errors.append(  # counts cut at max_length (the runner's truncation) decide alike
                None
                if fits
                else WindowError(
                    f"{name} text leaves the other no room in {self.max_length} tokens, so truncation {truncation!r} "
                    f"cannot cut the pair to fit; cut both (truncation 'longest_first') or shorten the {name} text",
                    no_room=True,
                )
            )
        return errors

    def window_error(self, item: TextInput, stride: int | None = None) -> WindowError | None:
        """Why `item` cannot be read in windows sharing `stride` tokens (default: the runner's), None when it can:
        a text, or a pair's second text beside its first (`pair_windows`), needing more than `max_windows` windows;
        or a pair's first text leaving the second no more tokens than the windows share (`no_room`)."""
        overlap = self.stride if stride is None else stride
        if isinstance(item, str):
            text, room, subject = encodable(item), self.max_length - self.tokenizer.num_special_tokens_to_add(False), ""
        else:  # a window holds the first text whole, and what is left of the second
            first, text = map(encodable, item)
            room = self.max_length - self.tokenizer.num_special_tokens_to_add(True)
            room -= len(self.tokenizer.encode(first, add_special_tokens=False).ids)  # cut at max_length: enough
            if room <= overlap:
                return WindowError(
                    f"first text leaves {max(room, 0)} of {self.max_length} tokens to the second, not more than the "
                    f"{overlap} consecutive windows share; shorten the first text or lower the stride",
                    no_room=True,
                )
            subject = "second text is "
        if self._longer_than(text, room + (self.max_windows - 1) * (room - overlap)):
            return WindowError(
                f"{subject}longer than {self.max_windows} windows of {self.max_length} tokens (the max_windows limit)"
            )
        return None

    def _longer_than(self, text: str, tokens: int) -> bool:
        """Whether `text` has more than `tokens` tokens. They are counted in chunks of `COUNT_CHUNK` characters cut
        at spaces (one chunk's tokens in memory at a time), stopping as soon as they are over: a megabyte text is
        judged without its windows being built."""
        if 4 * len(text) <= tokens:  # a character is at most 4 tokens (its UTF-8 bytes, for byte-level BPE)
            return False
        counted, start = 0, 0
        while start < len(text):
            end = (
                len(text)
                if start + COUNT_CHUNK >= len(text)
                else max(text.rfind(" ", start, start + COUNT_CHUNK) + 1, start + COUNT_CHUNK // 2)
            )
            counted += len(self._counter.encode(text[start:end], add_special_tokens=False).ids)
            if counted > tokens:
                return True
            start = end
        return False

    @functools.cached_property
    def _counter(self) -> Tokenizer:
        """The tokenizer without truncation, to count a long text's tokens without building windows (made on
        first use: most runners never see a text that long, and copying mBERT's tokenizer takes a while)."""
        counter = Tokenizer.from_str(self.tokenizer.to_str())
        counter.no_truncation()
        return counter

    def _first_window_prefix(self, text: str) -> str:
        """A prefix of `text` whose first window is the whole text's, so a megabyte text read for its head
        costs about what its head costs, not a thousand windows. A prefix holds when its first window overflows
        and ends before the prefix's last word (which the cut may split) or, in text without spaces (Chinese,
        Thai), in the prefix's first half; else the prefix doubles, up to the whole text."""
        size = self.max_length * HEAD_CHARS_PER_TOKEN
        while size < len(text):
            prefix = text[:size]
            last_word = _LAST_WORD.search(prefix)
            boundary = size // 2 if last_word is None else last_word.start()
            encoding = self.tokenizer.encode(prefix)
            ends = [end for (_, end), special in zip(encoding.offsets, encoding.special_tokens_mask) if not special]
            if encoding.overflowing and ends and ends[-1] <= boundary:
                return prefix
            size *= 2
        return text

    def batches(
        self, windows: Sequence[Encoding], batch_size: int = 32
    ) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        """(window indices, ONNX feed) per batch: similar lengths together, padded to a bucket length."""
        lengths = [len(w) for w in windows]
        for indices, width in plan_batches(lengths, self.max_length, batch_size, self.max_batch_tokens):
            yield indices, padded_inputs([windows[i] for i in indices], width, self.input_names, self.pad_id)

    def run(self, windows: Sequence[Encoding], batch_size: int = 32) -> list[np.ndarray]:
        """The graph's first output for each window, in input order: a vector for sequence-level tasks,
        a (real tokens, labels) matrix for token-level ones (padding removed), a (masks, vocabulary) matrix for
        fill-mask's gathered rows."""
        results: list[np.ndarray] = [np.empty(0)] * len(windows)
        for indices, feed in self.batches(windows, batch_size):
            (output,) = self.session.run(None, feed)[:1]
            if self.gathered_id is not None:
                counts = (feed["input_ids"] == self.gathered_id).sum(axis=1)
                for index, rows in zip(indices, np.split(output, np.cumsum(counts)[:-1])):
                    results[index] = rows
                continue
            for row, index in zip(output, indices):
                results[index] = row[: len(windows[index])] if row.ndim == 2 else row
        return results

    def first_windows(self, items: Sequence[TextInput]) -> list[Encoding]:
        """Each text's head window and each pair's one window cut "longest_first", in order: what parity proofs,
        calibration and accuracy reports feed."""
        singles = {i: item for i, item in enumerate(items) if isinstance(item, str)}
        pairs = {i: item for i, item in enumerate(items) if not isinstance(item, str)}
        windows: dict[int, Encoding] = {}
        if singles:
            windows.update(zip(singles, (group[0] for group in self.windows(list(singles.values()), "head"))))
        if pairs:
            windows.update(zip(pairs, (group[0] for group in self.pair_windows(list(pairs.values()), "longest_first"))))
        return [windows[i] for i in range(len(items))]

    def head_outputs(self, items: Sequence[TextInput], batch_size: int = 32) -> list[np.ndarray]:
        """The graph's output for each text's (or pair's) first window: what accuracy reports compare."""
        return self.run(self.first_windows(items), batch_size)
