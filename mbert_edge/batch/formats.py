"""The input formats and the file-name endings that mean them (no pyarrow: the CLI's options use these)."""

from __future__ import annotations

from pathlib import Path

SUFFIXES = {"parquet": (".parquet", ".pq"), "jsonl": (".jsonl", ".json", ".ndjson"), "csv": (".csv",)}
FORMATS = tuple(SUFFIXES)


def format_of(path: Path) -> str | None:
    """The format a file name says, or None."""
    return next((fmt for fmt, endings in SUFFIXES.items() if path.name.lower().endswith(endings)), None)
