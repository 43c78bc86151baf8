"""Reading the input files in record batches and writing output files whole or not at all (pyarrow)."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_ds
import pyarrow.parquet as pq

from mbert_edge.batch.formats import FORMATS, format_of
from mbert_edge.errors import DataError

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
        raise DataError(
            f"cannot tell the format of {path} ({', '.join(sorted(map(str, found))) or 'no data files'}): "
            f"pass --format {'|'.join(FORMATS)}"
        )
    if not files:
        raise DataError(f"{path} holds no {fmt} files")
    fmt = fmt or str(found.pop())
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


def reader_options(fmt: str, text_columns: list[str]) -> dict[str, Any]:
    """pyarrow's reading options, shared by the local reader and Ray's `read_*`: CSV reads the text columns
    as strings, so texts that look like numbers stay texts, and leaves strings' bytes unchecked, as the JSON
    reader does, so that a row that is not UTF-8 gets an error of its own (`results.annotate`)."""
    if fmt == "csv":
        types = dict.fromkeys(text_columns, pa.string())
        return {"convert_options": pa_csv.ConvertOptions(column_types=types, check_utf8=False)}
    return {}


def open_input(files: list[Path], fmt: str, text_columns: list[str]) -> pa_ds.Dataset:
    """All files as one dataset (one schema, the first file's), read lazily."""
    file_format = FILE_FORMATS[fmt](**reader_options(fmt, text_columns))
    try:
        return pa_ds.dataset([str(f) for f in files], format=file_format)
    except (pa.ArrowInvalid, OSError) as exc:  # pyarrow reads only the first file here, for the schema
        raise _unreadable(exc, files[0], fmt) from exc


def row_lines(path: Path | str, fmt: str) -> Iterator[int]:
    """The 1-based line where each row of a CSV file (its header first) or JSON Lines file starts, as pyarrow
    reads them (decompressed as pyarrow does by the file's suffix; lines end at CR, LF or CR LF; a CSV record
    may span lines inside quotes), blank lines skipped. Counted here with the standard library's CSV reader:
    pyarrow names no line of a file (its CSV row numbers skip blank lines, its JSON ones count from the start
    of the block it was parsing)."""
    with pa.input_stream(str(path)) as raw, io.TextIOWrapper(raw, "utf-8", "replace", newline="") as text:
        if fmt == "jsonl":
            yield from (number for number, line in enumerate(text, 1) if line.strip())
            return
        records, start = csv.reader(text), 1
        with contextlib.suppress(csv.Error):  # a field over its size limit, which pyarrow reads: unlocated from here
            for record in records:
                if record:
                    yield start
                start = records.line_num + 1


WHERE = re.compile(r": (\S.* line \d+|row \d+ of the input)$")  # what `RowLines` appends to a row's error


class RowLines:
    """Where each row of a CSV or JSON Lines input is (its file's name and line), for rows asked for in
    increasing order: the files are read once, forward."""

    def __init__(self, files: list[Path], fmt: str) -> None:
        self.lines = (
            (path.name, line)
            for path in files
            for line in itertools.islice(row_lines(path, fmt), int(fmt == "csv"), None)
        )
        self.next = 0

    def __call__(self, row: int) -> str:
        found = next(itertools.islice(self.lines, row - self.next, None), None)
        self.next = row + 1
        return f"{found[0]} line {found[1]}" if found else f"row {row + 1} of the input"


def _unreadable(exc: Exception, path: Path | str, fmt: str) -> DataError:
    """pyarrow's failure to read the input file `path` as one line, naming the file's line where pyarrow names
    a row of its own count."""
    locate = {"csv": _csv_failure, "jsonl": _json_failure}.get(fmt)
    where = locate(path, str(exc)) if locate and isinstance(exc, pa.ArrowInvalid) else None
    return DataError(f"cannot read the {fmt} input: {where or str(exc).splitlines()[0]}")


def _format_name(dataset: pa_ds.Dataset) -> str:
    return next(name for name, cls in FILE_FORMATS.items() if isinstance(dataset.format, cls))


def _csv_failure(path: Path | str, message: str) -> str | None:
    """pyarrow's CSV failure `message` with its row number (which skips blank lines) made the file's line."""
    row = re.search(r"Row #(\d+): ", message)
    if row is None:
        return None
    line = next(itertools.islice(row_lines(path, "csv"), int(row[1]) - 1, None), None)
    return f"{path} line {line}: {message.rsplit('Invalid: ', 1)[-1].replace(row[0], '')}" if line else None


JSON_TYPES = {str: "string", bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}


def _json_failure(path: Path | str, message: str) -> str | None:
    """The first line of `path` that is not JSON, or whose value in the column pyarrow's failure `message`
    names has the JSON type it says the column changed to: the message names a 0-based row of the block pyarrow
    was parsing ("row 617" for line 40,001)."""
    changed = re.search(r"Column\(/([^)]*)\) changed from (\w+) to (\w+)", message)
    keys = changed[1].split("/") if changed else []
    with open(path, encoding="utf-8", errors="replace") as file:
        for number, line in enumerate(file, 1):
            try:
                value = json.loads(line) if line.strip() else None
            except json.JSONDecodeError as exc:
                return f"{path} line {number} is not JSON ({exc.msg})"
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if changed and JSON_TYPES.get(type(value)) == changed[3]:
                return (
                    f"{path} line {number}: its {'.'.join(keys)} is a {changed[3]}, where earlier rows have a "
                    f"{changed[2]}"
                )
    return None


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in its order and types (nulls where one is missing): what
    pyarrow's dataset makes of each file of an input, for readers that take the files one by one."""
    columns = [
        table.column(field.name).cast(field.type)
        if field.name in table.column_names
        else pa.nulls(len(table), field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _by_file(dataset: pa_ds.Dataset, read: Callable[[pa_ds.FileFragment], Iterable[Any]]) -> Iterator[Any]:
    """What `read` gives for each file of the dataset, in order; a failure names its file."""
    for fragment in dataset.get_fragments():
        try:
            yield from read(fragment)
        except pa.ArrowInvalid as exc:
            raise _unreadable(exc, fragment.path, _format_name(dataset)) from exc


def record_batches(dataset: pa_ds.Dataset, rows: int) -> Iterator[pa.RecordBatch]:
    """The dataset's rows in input order, in record batches of at most `rows` rows."""
    return _by_file(dataset, lambda fragment: fragment.to_batches(schema=dataset.schema, batch_size=rows))


def row_count(dataset: pa_ds.Dataset) -> int:
    """The dataset's rows (every file is read: a malformed row fails here, before any output)."""
    return sum(_by_file(dataset, lambda fragment: [fragment.count_rows()]))


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


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
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
