"""Progress on stderr for long steps (loading, tracing, validating); silent when disabled (library use)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click


class Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def note(self, message: str) -> None:
        if self.enabled:
            click.echo(message, err=True)

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        """`label ...` then `label: done in 1.2 s` around a step with no natural unit of progress (on two
        lines, as the libraries called inside may print their own progress)."""
        start = time.perf_counter()
        self.note(f"{label} ...")
        yield
        self.note(f"{label}: done in {time.perf_counter() - start:.1f} s")

    @contextmanager
    def bar(self, label: str, total: int, unit: str | None = None) -> Iterator[Callable[[int], None]]:
        """A progress bar over `total` items; yields the function that advances it. With a `unit`, it also
        shows the items done and their rate ("1200/20000 ... 85 rows/s")."""
        if not self.enabled:
            yield lambda n: None
            return
        start, done = time.perf_counter(), [0]

        def rate(_: int | None) -> str:  # click calls it as the bar is first drawn, before `bar` exists
            return f"{done[0] / max(time.perf_counter() - start, 1e-9):,.1f} {unit}/s"

        show: Callable[[int | None], str] | None = rate if unit else None
        with click.progressbar(
            length=total,
            label=label,
            file=sys.stderr,
            show_pos=unit is not None,
            item_show_func=show,
        ) as bar:

            def advance(n: int) -> None:
                done[0] += n
                bar.update(n)

            yield advance
