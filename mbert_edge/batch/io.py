"""Reading the input files in record batches and writing output files whole or not at all (pyarrow)."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_ds
import pyarrow.parquet as pq

from mbert_edge.errors import DataError

from mbert_edge.batch.formats import FORMATS, format_of

FILE_FORMATS = {"parquet": pa_ds.ParquetFileFormat, "jsonl": pa_ds.JsonFileFormat, "csv": pa_ds.CsvFileFormat}


def input_files(path: Path, fmt: str | None) -> tuple[list[Path], str]:
    """The files of INPUT (itself, or a folder's files of the format, sorted by name) and their format:
    `fmt`, else the one the file names say (a folder must hold one format)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
        files = [p for p in files if format_of(p) and (fmt is None or format_of(p) == fmt)]
    else:
        files = [path]
    found = {format_of(p) for p in files}
    if fmt is None and (None in found or len(found) != 1):
        raise DataError(f"cannot tell the format of {path} ({', '.join(sorted(map(str, found))) or 'no data files'}): "
                        f"pass --format {'|'.join(FORMATS)}")
    if not files:
        raise DataError(f"{path} holds no {fmt} files")
    fmt = fmt or found.pop()
    files = [p for p in files if _has_content(p)]  # an empty or blank file has no rows, and JSON readers refuse it
    if not files:
        raise DataError(f"{path} has no rows: its {fmt} files are empty")
    return files, fmt


def _has_content(path: Path) -> bool:
    """Whether the file holds more than whitespace (read until the first byte that is not)."""
    with path.open("rb") as file:
        while chunk := file.read(1 << 16):
            if chunk.strip():
                return True
    return False


def reader_options(fmt: str, text_column: str) -> dict[str, Any]:
    """pyarrow's reading options, shared by the local reader and Ray's `read_*`: CSV reads the text column
    as strings, so texts that look like numbers stay texts."""
    if fmt == "csv":
        return {"convert_options": pa_csv.ConvertOptions(column_types={text_column: pa.string()})}
    return {}


def open_input(files: list[Path], fmt: str, text_column: str) -> pa_ds.Dataset:
    """All files as one dataset (one schema), read lazily."""
    file_format = FILE_FORMATS[fmt](**reader_options(fmt, text_column))
    try:
        return pa_ds.dataset([str(f) for f in files], format=file_format)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(exc, files, fmt) from exc


def _unreadable(exc: Exception, files: Iterable[Path | str], fmt: str) -> DataError:
    """pyarrow's failure to read the input as one line, naming the line for JSON Lines."""
    where = _unparsed(files, fmt) if isinstance(exc, pa.ArrowInvalid) else None
    return DataError(f"cannot read the {fmt} input: {where or str(exc).splitlines()[0]}")


def _format_name(dataset: pa_ds.Dataset) -> str:
    return next(name for name, cls in FILE_FORMATS.items() if isinstance(dataset.format, cls))


def _unparsed(files: Iterable[Path | str], fmt: str) -> str | None:
    """Where a JSON Lines input first fails to parse, as a 1-based line of its file; read only once pyarrow has
    failed, whose message names a 0-based row of the block it was parsing ("row 617" for line 40,001)."""
    if fmt != "jsonl":
        return None
    for name in files:
        with open(name, encoding="utf-8", errors="replace") as file:
            for number, line in enumerate(file, 1):
                try:
                    if line.strip():
                        json.loads(line)
                except json.JSONDecodeError as exc:
                    return f"{name} line {number} is not JSON ({exc.msg})"
    return None


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in its order and types (nulls where one is missing): what
    pyarrow's dataset makes of each file of an input, for readers that take the files one by one."""
    columns = [table.column(field.name).cast(field.type) if field.name in table.column_names
               else pa.nulls(len(table), field.type) for field in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def record_batches(dataset: pa_ds.Dataset, rows: int) -> Iterator[pa.RecordBatch]:
    """The dataset's rows in input order, in record batches of at most `rows` rows."""
    try:
        yield from dataset.to_batches(batch_size=rows)
    except pa.ArrowInvalid as exc:
        raise _unreadable(exc, dataset.files, _format_name(dataset)) from exc


def row_count(dataset: pa_ds.Dataset) -> int:
    """The dataset's rows (every file is read: a malformed row fails here, before any output)."""
    try:
        return dataset.count_rows()
    except pa.ArrowInvalid as exc:
        raise _unreadable(exc, dataset.files, _format_name(dataset)) from exc


def regroup(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Consecutive tables of exactly `rows` rows (the last may be shorter), whatever batch sizes the reader
    gives: part boundaries must not depend on how pyarrow happens to split the files."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - held, batch.num_rows)
            pending.append(batch.slice(0, take))
            held += take
            batch = batch.slice(take)
            if held == rows:
                yield pa.Table.from_batches(pending)
                pending, held = [], 0
    if held:
        yield pa.Table.from_batches(pending)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a temporary name beside `path`, then rename: `path` is complete or absent."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_parquet(table: pa.Table, path: Path) -> None:
    write_atomic(path, lambda temporary: pq.write_table(table, temporary))


def write_json(data: dict[str, Any], path: Path) -> None:
    write_atomic(path, lambda temporary: temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))
