"""The shared base of the task classes: a bundle, its runner, and the one implementation of calling,
streaming and long-text windows.

Kept deliberately small (after fastembed's runtime): a task class adds only how a text's windows' outputs
become its result. Everything here is read-only after construction, so one object serves many threads.
"""

from __future__ import annotations

import itertools
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from ..bundle import Bundle
from ..errors import BundleError, WindowError
from ..tasks import PAIR_TRUNCATIONS, TASKS, TRUNCATIONS
from .runner import Runner, RunnerOptions
from .textinput import TextInput, as_text_list, check_choice, check_count

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's own from Python 3.11; for the type checker only

PerText = list[tuple[list[Encoding], list[np.ndarray]]]  # each text's windows and the graph's output for each


NUMBERED = re.compile(r"(text|pair) (\d+)")  # how an error of `predict` names one of its inputs


class TaskModel(ABC):
    """Loads a bundle of one task and runs texts through it; subclasses turn outputs into results."""

    task: ClassVar[str]  # its name in `mbert_edge.tasks.TASKS`
    default_truncation: ClassVar[str] = "window"
    probe: TextInput = "mbert-edge"  # a text any model of the task answers: the server's first run, cold-start timings

    @abstractmethod
    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """The task's main call (`encode` for embeddings): results for one text or a sequence of texts."""

    def __init__(
        self, path: str | Path | Bundle, precision: str = "auto", **run_options: Unpack[RunnerOptions]
    ) -> None:
        """`precision`: "auto" (INT8 when the bundle has it), "int8" or "fp32"; `run_options`: how the model runs
        (`RunnerOptions`: stride, max_batch_tokens, max_windows, intra_op_threads, inter_op_threads, options,
        session_config, verify_hashes). `path` may be an opened `Bundle` (its manifest is then not read again)."""
        self.bundle = path if isinstance(path, Bundle) else Bundle.open(path)
        if self.bundle.task != self.task:
            raise BundleError(
                f"bundle {self.bundle.path} is a {self.bundle.task} bundle, not {self.task}; "
                "load it with the class for its task (mbert_edge.load picks it)"
            )
        self.precision = self.bundle.resolve_precision(precision)
        self.runner = Runner.open(self.bundle, self.precision, **run_options)
        trim = self.bundle.manifest.trim
        self._trimmed_unk_id = self.bundle.manifest.special_tokens["unk"].id if trim else None
        self._warned_unknown = False

    @classmethod
    def variant(cls, bundle: Bundle) -> type[TaskModel]:
        """The class `mbert_edge.load` opens `bundle` with: this one, or a subclass for what the bundle is."""
        return cls

    @classmethod
    def from_bundle(cls, path: str | Path | Bundle, **kwargs: Any) -> TaskModel:
        """Load the bundle at `path` (same arguments as the constructor)."""
        return cls(path, **kwargs)

    @property
    def session(self) -> ort.InferenceSession:
        return self.runner.session

    @property
    def tokenizer(self) -> Tokenizer:
        """The bundle's tokenizer, truncating at `max_length` with overlapping windows, never padding."""
        return self.runner.tokenizer

    def window_error(self, item: TextInput, options: Mapping[str, Any] | None = None) -> WindowError | None:
        """Why `predict` with `options` would refuse `item` read in windows (`Runner.window_error`), None when it
        would not; with a `truncation` other than "window" among them, why that truncation cannot cut it (a pair cut
        by one text alone: `Runner.cut_errors`; a text's head always can)."""
        truncation = (options or {}).get("truncation")
        if truncation not in (None, "window"):
            return None if isinstance(item, str) else self.runner.cut_errors([item], truncation)[0]
        return self.runner.window_error(item)

    @property
    def max_length(self) -> int:
        return self.runner.max_length

    @property
    def labels(self) -> list[str] | None:
        """Label names in id order; None for embeddings."""
        return self.bundle.manifest.labels

    def _per_text(
        self, texts: list[TextInput], truncation: str | None, batch_size: int, stride: int | None = None
    ) -> PerText:
        """(windows, outputs) of each text or pair: all windows of all inputs are batched together (pairs' windows
        overlapping by `stride` tokens, where given, not the runner's). A text cut by
        the task's default "head" truncation, or a pair cut by the default "longest_first", is warned about
        (asking for it explicitly is not)."""
        check_count("batch_size", batch_size)
        pairs = [t for t in texts if not isinstance(t, str)]
        if pairs:
            check_choice("truncation", truncation, PAIR_TRUNCATIONS)
            windows = self.runner.pair_windows(pairs, truncation or PAIR_TRUNCATIONS[0], stride)
            cut = f"some pairs are longer than {self.max_length} tokens and were cut, the longer text first"
            fix = "pass truncation='only_first' or 'only_second' to cut one text alone"
        else:
            check_choice("truncation", truncation, TRUNCATIONS)
            windows = self.runner.windows(
                [t for t in texts if isinstance(t, str)], truncation or self.default_truncation
            )
            cut = f"some texts are longer than {self.max_length} tokens and were cut to their first {self.max_length}"
            fix = "pass truncation='window' (on the command line --truncation window) to read them whole"
        if self._trimmed_unk_id is not None and not self._warned_unknown:
            self._check_unknown_rate(windows, self._trimmed_unk_id)
        if (
            truncation is None
            and (pairs or self.default_truncation == "head")
            and any(g[0].overflowing for g in windows)
        ):
            warnings.warn(f"{cut}; {fix}", UserWarning, stacklevel=4)
        outputs = self.runner.run([w for group in windows for w in group], batch_size)
        bounds = list(itertools.accumulate((len(group) for group in windows), initial=0))
        return [(group, outputs[a:b]) for group, a, b in zip(windows, bounds, bounds[1:])]

    def _call(
        self,
        texts: TextInput | Sequence[TextInput],
        batch_size: int,
        truncation: str | None,
        postprocess: Callable[[list[Any], PerText], Sequence[Any] | np.ndarray],  # the inputs as given, texts or pairs
        stride: int | None = None,
    ) -> Any:
        """The task's `postprocess` over all inputs' outputs, one result per input; a single string (or pair, where
        the task takes pairs) gives its result alone (typed by the caller, which knows its task's result)."""
        items, single = as_text_list(texts, pairs=TASKS[self.task].pairs)
        results = postprocess(items, self._per_text(items, truncation, batch_size, stride))
        return results[0] if single else results

    def _check_unknown_rate(self, windows: list[list[Encoding]], unk_id: int) -> None:
        """Count [UNK] in this call's tokens; warn once per model when more than 5% are unknown, the sign of
        text outside the languages a trimmed vocabulary kept."""
        ids = [i for group in windows for e in group for i in e.ids]
        unknown = ids.count(unk_id)
        if unknown > 0.05 * len(ids):
            self._warned_unknown = True
            warnings.warn(
                f"{unknown} of {len(ids)} tokens in this call are unknown to the trimmed vocabulary of "
                f"{self.bundle.path} (kept: {self.bundle.manifest.trim and self.bundle.manifest.trim.scripts}): the text is likely in "
                "a language it dropped; use the untrimmed bundle for it",
                UserWarning,
                stacklevel=5,
            )

    def iter_predict(self, texts: Iterable[TextInput], chunk_size: int = 1024, **options: Any) -> Iterator[Any]:
        """`predict` for a stream of texts (a generator, a file): one result at a time, in input order, with
        memory bounded by `chunk_size` texts. Takes `predict`'s keyword arguments. An error naming a text or pair
        by its number numbers it in the stream, from 0."""
        if isinstance(texts, (str, bytes, bytearray)) or not isinstance(texts, Iterable):
            raise TypeError(f"texts must be an iterable of str, got {type(texts).__name__}")
        check_count("chunk_size", chunk_size)
        source = iter(texts)
        for first in itertools.count(0, chunk_size):
            chunk = list(itertools.islice(source, chunk_size))
            if not chunk:
                return
            as_text_list(chunk, first, pairs=TASKS[self.task].pairs)  # a wrong type is named by its index in the stream
            try:
                results = self.predict(chunk, **options)
            except ValueError as exc:  # "text 3 ...", "pair 3's ...": numbered within this chunk, renumbered
                numbered = NUMBERED.match(exc.args[0]) if first and exc.args and isinstance(exc.args[0], str) else None
                if numbered:
                    renumbered = f"{numbered[1]} {int(numbered[2]) + first}{exc.args[0][numbered.end() :]}"
                    exc.args = (renumbered, *exc.args[1:])
                raise
            yield from results
