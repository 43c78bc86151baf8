"""`mbert-edge batch --ray`: Ray Data reads the input, a pool of actors runs the bundle, this process writes
Parquet as the results stream back."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

# Ray Data resolves each listed path in a thread of its own, and those threads import fsspec's HTTP module at
# once; without aiohttp that import races and fails one of them now and then ("cannot import name
# 'HTTPFileSystem'", Ray 2.60). We pass a few local files: one listing thread costs nothing. Set here for this
# driver and, through the job's runtime environment, for the workers that list files.
SERIAL_LISTING = {"RAY_DATA_LIST_FILES_THREADED_NUM_WORKERS": "1"}
os.environ.update(SERIAL_LISTING)

import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data

from mbert_edge.batch.io import input_files, open_input, reader_options, row_count, write_parquet
from mbert_edge.batch.job import (
    DONE_FILE,
    Job,
    Summary,
    check_job_options,
    describe,
    kept_columns,
    start_output,
    summarize,
)
from mbert_edge.batch.predictor import ray_predictor
from mbert_edge.errors import MbertEdgeError
from mbert_edge.progress import Progress
from mbert_edge.runtime import load
from mbert_edge.runtime.cpus import available_cpus

READERS = {"parquet": ray.data.read_parquet, "jsonl": ray.data.read_json, "csv": ray.data.read_csv}
STAGING = ".ray-staging"  # hidden from readers of OUTPUT until the run completes
IO_CPUS = 1


GROUP = "__mbert_edge_group__"  # the group of input files a row came from, carried through the pipeline


@dataclass(frozen=True)
class Group:
    """Consecutive input files (indices into the input's files) that form one unit of resumption."""

    files: list[int]
    rows: int
    schema: pa.Schema

    @property
    def first(self) -> int:
        return self.files[0]


def file_groups(files: list[Path], fmt: str, text_columns: list[str], rows: int) -> list[Group]:
    """Consecutive input files of one schema, gathered until they hold `rows` rows, each group with its row count
    and schema. A group is the unit of resumption: its parts appear in OUTPUT once all its rows are done. Row
    counts come from Parquet's metadata, or from reading a JSON Lines or CSV file once here (far faster than
    running the model on it)."""
    groups: list[Group] = []
    for index, path in enumerate(files):
        dataset = open_input([path], fmt, text_columns)
        if not groups or groups[-1].rows >= rows or dataset.schema != groups[-1].schema:
            groups.append(Group([], 0, dataset.schema))
        last = groups[-1]
        groups[-1] = Group([*last.files, index], last.rows + row_count(dataset), last.schema)
    return groups


def tagged(predictor: type) -> type:
    """`predictor`'s class passing each row's group through (the model never sees it)."""

    class Tagged(predictor):
        def __call__(self, batch: pa.Table) -> pa.Table:
            group = batch.column(GROUP)
            return super().__call__(batch.drop_columns([GROUP])).append_column(GROUP, group)

    return Tagged


def file_parts(output: Path, file_index: int) -> list[Path]:
    return sorted(output.glob(f"part-{file_index:05d}-*.parquet"))


def file_marker(output: Path, file_index: int) -> Path:
    """Present once every part of the group of input files starting at `file_index` is in OUTPUT (readers
    skip names starting with _)."""
    return output / f"_file-{file_index:05d}.done"


def connect(address: str | None, workers: int | None, threads: int) -> int:
    """Join the cluster at `address`, or start a local Ray instance (None); return the actors to run.
    Ray Data lists and reads files (and tags their rows) in tasks of one CPU each, and the actors start first: if they
    held every CPU those tasks would wait forever, so one CPU is always left to them."""
    if not ray.is_initialized():
        local_cpus = (workers or max(1, available_cpus() // threads)) * threads + IO_CPUS
        ray.init(
            address=address,
            num_cpus=None if address else local_cpus,
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
            runtime_env={"env_vars": SERIAL_LISTING},
        )
    cpus = int(ray.cluster_resources().get("CPU", 0))
    workers = workers or max(1, (cpus - IO_CPUS) // threads)
    if workers * threads + IO_CPUS > cpus:
        raise MbertEdgeError(
            f"{workers} workers x {threads} threads need {workers * threads} CPUs, and Ray Data "
            f"one more to read; the cluster has {cpus}: ask for fewer workers"
        )
    return workers


def run_on_ray(
    job: Job, address: str | None, workers: int | None, threads: int, progress: Progress | None = None
) -> Summary:
    """Run `job` on Ray: `workers` actors (default: as many as the cluster's CPUs allow), each reserving
    `threads` CPUs and running ONNX Runtime with as many threads. The input files run in groups (`file_groups`:
    at least `job.part_rows` rows each); consecutive groups of one schema share one Ray Data pipeline, so its
    actors load the bundle once. A group's parts appear in OUTPUT only once the whole group is done: a rerun of
    an interrupted job skips the groups already done and runs the rest (a group is the unit of resumption)."""
    files, fmt = input_files(job.input, job.format)
    probe = load(job.bundle, precision=job.precision, intra_op_threads=1)  # fail here, before starting Ray
    check_job_options(probe, job)
    task, precision = probe.task, probe.precision
    del probe
    start_output(job.output, describe(job, task, precision, files, fmt, engine="ray"))
    if (job.output / DONE_FILE).exists():
        return summarize(job.output, 0, len(list(job.output.glob("part-*.parquet"))), 0, 0.0)
    progress = progress or Progress(enabled=False)
    groups = file_groups(files, fmt, job.text_columns, job.part_rows)
    done = {group.first for group in groups if file_marker(job.output, group.first).exists()}
    todo = [group for group in groups if group.first not in done]
    skipped = sum(len(file_parts(job.output, index)) for index in done)
    schema = open_input(files, fmt, job.text_columns).schema  # the whole input's, as the local path reads it
    predictor = ray_predictor(
        job.bundle.resolve(),
        text_column=job.text_column,
        pair_column=job.pair_column,
        query_column=job.query_column,
        schema=schema,
        keep=kept_columns(schema.names, job, task),
        precision=precision,
        intra_op_threads=threads,
        batch_size=job.batch_size,
        options=job.options,
        truncation=job.truncation,
    )
    workers = connect(address, workers, threads)
    start = time.perf_counter()
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # groups finish, and are marked done, in input order
    context.use_datasource_v2 = False  # Ray 2.60's new Parquet reader lists files idly for seconds per pipeline
    context.enable_progress_bars = False  # ours below counts rows; Ray Data's warnings and errors still show
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled"
    written = 0
    rows_run = sum(group.rows for group in todo)
    with progress.bar(f"{task} ({precision}) on Ray -> {job.output}", rows_run, unit="rows") as advance:
        for _, same_schema in itertools.groupby(todo, key=lambda group: group.schema):
            written += len(run_groups(job, files, fmt, list(same_schema), tagged(predictor), workers, threads, advance))
    if not written + skipped:
        raise MbertEdgeError(f"{job.input} has no rows")
    (job.output / DONE_FILE).touch()
    return summarize(job.output, written, skipped, rows_run, time.perf_counter() - start)


def run_groups(
    job: Job,
    files: list[Path],
    fmt: str,
    groups: list[Group],
    predictor: type,
    workers: int,
    threads: int,
    advance: Callable[[int], None],
) -> list[Path]:
    """Groups of input files of one schema through one Ray Data pipeline, each row tagged with its group. This
    driver takes the results as they stream out, writes each group's parts of `job.part_rows` rows to a hidden
    staging folder, and renames them into OUTPUT, with the group's marker, once its last row is in; returns the
    parts written."""
    staging = job.output / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for group in groups:
        for stale in file_parts(job.output, group.first):  # parts of a group an interrupted run was renaming
            stale.unlink()
    left = {group.first: group.rows for group in groups}
    pending: dict[int, list[pa.Table]] = {index: [] for index in left}
    staged: dict[int, list[Path]] = {index: [] for index in left}
    parts: list[Path] = []

    def stage(index: int, final: bool) -> None:
        """Write the group's pending rows as parts of `job.part_rows` (and, when `final`, what is left)."""
        table = pa.concat_tables(pending[index]) if pending[index] else None
        while table is not None and (len(table) >= job.part_rows or (final and len(table))):
            staged[index].append(staging / f"part-{index:05d}-{len(staged[index]):05d}.parquet")
            write_parquet(table.slice(0, job.part_rows), staged[index][-1])
            table = table.slice(job.part_rows)
        pending[index] = [table] if table is not None and len(table) else []
        if final:
            for part in staged[index]:
                parts.append(job.output / part.name)
                os.replace(part, parts[-1])
            file_marker(job.output, index).touch()

    for index in [index for index, rows in left.items() if not rows]:  # files without rows: nothing to run
        stage(index, final=True)
    readers = [
        READERS[fmt](
            [str(files[i].resolve()) for i in group.files], **reader_options(fmt, job.text_columns)
        ).map_batches(functools.partial(_tag, group=group.first), batch_format="pyarrow")
        for group in groups
        if group.rows
    ]
    if readers:
        dataset = readers[0].union(*readers[1:]) if len(readers) > 1 else readers[0]
        # The actor pool hands out whole blocks, and a file is often one block: cut them to a batch each, so that
        # every actor has work (Ray Data's streaming repartition, which never holds the dataset).
        rows = 8 * job.batch_size
        results = dataset.repartition(target_num_rows_per_block=rows).map_batches(
            predictor,
            batch_format="pyarrow",
            batch_size=rows,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=threads,
        )
        for block in results.iter_batches(batch_format="pyarrow", batch_size=None):
            batch = cast(pa.Table, block)
            tags = batch.column(GROUP)
            for index in pc.unique(tags).to_pylist():
                rows_of_group = batch.filter(pc.equal(tags, index)).drop_columns([GROUP])
                pending[index].append(rows_of_group)
                left[index] -= len(rows_of_group)
                advance(len(rows_of_group))
                stage(index, final=not left[index])
    shutil.rmtree(staging, ignore_errors=True)
    return parts


def _tag(batch: pa.Table, group: int) -> pa.Table:
    """`batch` with a column naming its group of input files (by its first file's index)."""
    return batch.append_column(GROUP, pa.array([group] * len(batch), pa.int64()))
