"""A batch job's arguments, its output folder (numbered parts, resumable), and the single-process runner.

The part bookkeeping is written here by hand: pyarrow and Ray Data write datasets, but neither skips the
parts an interrupted run already finished.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from mbert_edge.batch.io import (
    WHERE,
    RowLines,
    input_files,
    open_input,
    record_batches,
    regroup,
    row_count,
    write_json,
    write_parquet,
)
from mbert_edge.batch.results import ERROR_COLUMN, annotate, check_options, output_columns
from mbert_edge.bundle import MANIFEST_NAME, check_writable
from mbert_edge.errors import MbertEdgeError
from mbert_edge.progress import Progress
from mbert_edge.runtime import TaskModel, load
from mbert_edge.tasks import TASKS

JOB_FILE = "_mbert_edge_batch.json"  # pyarrow and Ray skip names starting with "_" or "." when reading a folder
DONE_FILE = "_SUCCESS"


@dataclass(frozen=True)
class Job:
    """What `mbert-edge batch` was asked to do. Every field but the paths decides the output's content."""

    bundle: Path
    input: Path
    output: Path
    text_column: str = "text"
    id_column: str | None = None
    pair_column: str | None = None  # each row's second text: (text, text_pair) pairs
    query_column: str | None = None  # each row's query or question: (query, text) pairs scored by a cross-encoder,
    # or (question, context) pairs answered by a question-answering bundle (--question-column)
    format: str | None = None
    precision: str = "auto"
    batch_size: int = 32
    options: dict[str, Any] = field(default_factory=dict)  # the task's own predict options (`mbert_edge.tasks`)
    truncation: str | None = None
    part_rows: int = 10_000

    @property
    def text_columns(self) -> list[str]:
        """The columns the model reads."""
        return [self.text_column, *(c for c in (self.pair_column, self.query_column) if c is not None)]


@dataclass
class Summary:
    rows: int
    errors: dict[str, int]
    parts_written: int
    parts_skipped: int
    rows_run: int
    seconds: float
    output: Path

    def line(self) -> str:
        bad = sum(self.errors.values())
        detail = f" ({', '.join(f'{kind} {n:,}' for kind, n in sorted(self.errors.items()))})" if bad else ""
        skipped = f", {self.parts_skipped} already done" if self.parts_skipped else ""
        return (
            f"{self.output}: {self.rows:,} rows in {self.parts_written + self.parts_skipped} parts "
            f"({self.parts_written} written{skipped}); {self.rows_run:,} rows in {self.seconds:.1f} s "
            f"({self.rows_run / max(self.seconds, 1e-9):,.1f} rows/s); rows with an error: {bad:,}{detail}"
        )


def bundle_identity(bundle: Path) -> str:
    """The sha256 of the bundle's manifest, which records every file's hash: a changed model changes it."""
    return hashlib.sha256((bundle / MANIFEST_NAME).read_bytes()).hexdigest()


def describe(job: Job, task: str, precision: str, files: list[Path], fmt: str, engine: str) -> dict[str, Any]:
    """The record a rerun must match to resume: the arguments, the bundle and the input files as they are."""
    fields = {k: v for k, v in asdict(job).items() if k not in ("bundle", "input", "output", "format", "precision")}
    return {
        "bundle": str(job.bundle.resolve()),
        "bundle_manifest_sha256": bundle_identity(job.bundle),
        "task": task,
        "precision": precision,
        "format": fmt,
        "engine": engine,
        **fields,
        "inputs": [
            {"path": str(f.resolve()), "bytes": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files
        ],
    }


def start_output(output: Path, description: dict[str, Any]) -> None:
    """Create OUTPUT with the job's record, or check that the job already there is this one."""
    if output.exists() and not output.is_dir():
        raise MbertEdgeError(f"{output} is a file: choose a folder for the output")
    check_writable(output, "the batch output")
    record = output / JOB_FILE
    if record.exists():
        previous = json.loads(record.read_text(encoding="utf-8"))
        changed = sorted(k for k in description.keys() | previous.keys() if previous.get(k) != description.get(k))
        if changed:
            raise MbertEdgeError(
                f"{output} holds a batch job with other arguments or inputs ({', '.join(changed)} "
                "differ): rerun with the same ones to resume, or choose another OUTPUT"
            )
        return
    if output.exists() and any(output.iterdir()):
        raise MbertEdgeError(f"{output} exists and is not a batch job's output: choose a new or empty folder")
    output.mkdir(parents=True, exist_ok=True)
    write_json(description, record)


def kept_columns(names: list[str], job: Job, task: str) -> list[str]:
    """The input columns the output keeps (the id column alone, or all); a missing column or a name clash with
    the results fails."""
    asked = "--question-column" if TASKS[task].questions else "--query-column"
    flags = {job.text_column: "--text-column", job.pair_column: "--pair-column", job.query_column: asked}
    for column in job.text_columns:
        if column not in names:
            raise MbertEdgeError(
                f"the input has no column {column!r} (it has {', '.join(names)}): pass {flags[column]}"
            )
    if job.id_column is not None and job.id_column not in names:
        raise MbertEdgeError(f"the input has no column {job.id_column!r} for --id-column")
    keep = [job.id_column] if job.id_column is not None else names
    clash = [name for name in output_columns(task, job.query_column is not None) if name in keep]
    if clash:
        raise MbertEdgeError(
            f"the input already has the column(s) {', '.join(clash)} that the results add: "
            "rename them, or keep only an --id-column"
        )
    return keep


def check_job_options(model: TaskModel, job: Job) -> None:
    """Fail, before OUTPUT is made, on options the model refuses (`results.check_options`)."""
    queries, pairs = job.query_column is not None, job.pair_column is not None
    check_options(model, queries, pairs, job.batch_size, job.options, job.truncation)


def part_path(output: Path, index: int) -> Path:
    return output / f"part-{index:05d}.parquet"


def summarize(output: Path, parts_written: int, parts_skipped: int, rows_run: int | None, seconds: float) -> Summary:
    """The figures of a finished output, counted from its files (so a resumed run counts every part), errors
    by kind (without the ": <file> line <n>" naming where the row was read); `rows_run`: the rows this run
    predicted (None: all)."""
    errors = pq.read_table(output, columns=[ERROR_COLUMN]).column(0)
    counts: Counter[str] = Counter()
    for row in pc.value_counts(errors.drop_null()).to_pylist():
        counts[WHERE.sub("", row["values"])] += row["counts"]
    rows_run = len(errors) if rows_run is None else rows_run
    return Summary(len(errors), dict(counts), parts_written, parts_skipped, rows_run, seconds, output)


def run_local(job: Job, progress: Progress | None = None, intra_op_threads: int | None = None) -> Summary:
    """Run `job` in this process, part by part; parts already in OUTPUT are skipped."""
    progress = progress or Progress(enabled=False)
    model = load(job.bundle, precision=job.precision, intra_op_threads=intra_op_threads)
    files, fmt = input_files(job.input, job.format)
    dataset = open_input(files, fmt, job.text_columns)
    keep = kept_columns(dataset.schema.names, job, model.task)
    total = row_count(dataset)
    if not total:
        raise MbertEdgeError(f"{job.input} has no rows")
    check_job_options(model, job)
    start_output(job.output, describe(job, model.task, model.precision, files, fmt, engine="local"))
    sizes = [min(job.part_rows, total - start) for start in range(0, total, job.part_rows)]
    done = {index for index in range(len(sizes)) if part_path(job.output, index).exists()}
    remaining = total - sum(sizes[index] for index in done)
    lines = None if fmt == "parquet" else RowLines(files, fmt)
    start = time.perf_counter()
    with progress.bar(f"{model.task} ({model.precision}) -> {job.output}", remaining, unit="rows") as advance:
        for index, part in enumerate(regroup(record_batches(dataset, min(job.part_rows, 1 << 16)), job.part_rows)):
            if index not in done:
                locate = None if lines is None else lambda row, first=index * job.part_rows: lines(first + row)
                write_parquet(
                    annotate(
                        model,
                        part,
                        job.text_column,
                        pair_column=job.pair_column,
                        query_column=job.query_column,
                        keep=keep,
                        batch_size=job.batch_size,
                        options=job.options,
                        truncation=job.truncation,
                        advance=advance,
                        locate=locate,
                    ),
                    part_path(job.output, index),
                )
    (job.output / DONE_FILE).touch()
    return summarize(job.output, len(sizes) - len(done), len(done), remaining, time.perf_counter() - start)
