"""`mbert-edge batch --ray`: Ray Data reads the input, a pool of actors runs the bundle, Ray writes Parquet."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

# Ray Data resolves each listed path in a thread of its own, and those threads import fsspec's HTTP module at
# once; without aiohttp that import races and fails one of them now and then ("cannot import name
# 'HTTPFileSystem'", Ray 2.60). We pass a few local files: one listing thread costs nothing. Set here for this
# driver and, through the job's runtime environment, for the workers that list files.
SERIAL_LISTING = {"RAY_DATA_LIST_FILES_THREADED_NUM_WORKERS": "1"}
os.environ.update(SERIAL_LISTING)

import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
from ray.data.datasource import FilenameProvider

from mbert_edge.batch.io import input_files, open_input, reader_options, row_count
from mbert_edge.batch.job import DONE_FILE, Job, Summary, describe, kept_columns, start_output, summarize
from mbert_edge.batch.predictor import ray_predictor
from mbert_edge.errors import MbertEdgeError
from mbert_edge.progress import Progress
from mbert_edge.runtime import load
from mbert_edge.runtime.cpus import available_cpus

READERS = {"parquet": ray.data.read_parquet, "jsonl": ray.data.read_json, "csv": ray.data.read_csv}
STAGING = ".ray-staging"  # hidden from readers of OUTPUT until the run completes
IO_CPUS = 1


class PartNames(FilenameProvider):
    """`part-00000-<write uuid>.parquet`, ... in the order of Ray's write tasks (the input's order, as order is
    preserved); renamed to `part-<group's first file>-00000.parquet`, ... when the group of files is done."""

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"part-{task_index:05d}-{write_uuid}.parquet"


def file_groups(files: list[Path], fmt: str, text_columns: list[str], rows: int) -> list[tuple[list[int], int]]:
    """Indices of consecutive input files that run through one pipeline: files of one schema, gathered until
    they hold `rows` rows (a pipeline's actors start and load the bundle anew, which takes seconds, so small
    files are not run one by one), each with its row count. A group is the unit of resumption. Row counts come
    from Parquet's metadata, or from reading a JSON Lines or CSV file once here (far faster than running the
    model on it)."""
    groups: list[tuple[list[int], int]] = []
    schema = None
    for index, path in enumerate(files):
        dataset = open_input([path], fmt, text_columns)
        if not groups or groups[-1][1] >= rows or dataset.schema != schema:
            groups.append(([], 0))
            schema = dataset.schema
        indices, held = groups[-1]
        groups[-1] = ([*indices, index], held + row_count(dataset))
    return groups


def write_with_progress(results: ray.data.Dataset, staging: Path, advance: Callable[[int], None]) -> None:
    """`results.write_parquet` into `staging`, in a thread, while `advance` follows the rows of the parts as
    they appear (Ray Data's own progress is per operator; this is rows, their rate and what is left)."""
    failure: list[BaseException] = []
    counted: set[Path] = set()

    def write() -> None:
        try:  # one file per block: bundling blocks up to a row count (min_rows_per_file) took them out of order
            results.write_parquet(str(staging), filename_provider=PartNames())  # now and then (Ray 2.60)
        except BaseException as exc:  # raised again in the caller's thread
            failure.append(exc)

    def count() -> None:
        for part in sorted(set(staging.glob("part-*.parquet")) - counted):
            try:
                advance(pq.ParquetFile(part).metadata.num_rows)
            except (OSError, pa.ArrowInvalid):  # still being written
                continue
            counted.add(part)

    writer = threading.Thread(target=write, name="mbert-edge-ray-write", daemon=True)
    writer.start()
    while writer.is_alive():
        writer.join(0.5)
        count()
    if failure:
        raise failure[0]
    count()


def file_parts(output: Path, file_index: int) -> list[Path]:
    return sorted(output.glob(f"part-{file_index:05d}-*.parquet"))


def file_marker(output: Path, file_index: int) -> Path:
    """Present once every part of the group of input files starting at `file_index` is in OUTPUT (readers
    skip names starting with _)."""
    return output / f"_file-{file_index:05d}.done"


def connect(address: str | None, workers: int | None, threads: int) -> int:
    """Join the cluster at `address`, or start a local Ray instance (None); return the actors to run.
    Ray Data lists, reads and writes files in tasks of one CPU each, and the actors start first: if they
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
            f"one more to read and write; the cluster has {cpus}: ask for fewer workers"
        )
    return workers


def run_on_ray(
    job: Job, address: str | None, workers: int | None, threads: int, progress: Progress | None = None
) -> Summary:
    """Run `job` on Ray: `workers` actors (default: as many as the cluster's CPUs allow), each reserving
    `threads` CPUs and running ONNX Runtime with as many threads. Groups of input files (`file_groups`: at
    least `job.part_rows` rows each) run one after another, each through one Ray Data pipeline whose parts
    appear in OUTPUT only once the group is complete: a rerun of an interrupted job skips the groups already
    done and runs the rest (a group is the unit of resumption)."""
    files, fmt = input_files(job.input, job.format)
    probe = load(job.bundle, precision=job.precision, intra_op_threads=1)  # fail here, before starting Ray
    task, precision = probe.task, probe.precision
    del probe
    start_output(job.output, describe(job, task, precision, files, fmt, engine="ray"))
    if (job.output / DONE_FILE).exists():
        return summarize(job.output, 0, len(list(job.output.glob("part-*.parquet"))), 0, 0.0)
    progress = progress or Progress(enabled=False)
    groups = file_groups(files, fmt, job.text_columns, job.part_rows)
    done = {group[0] for group, _ in groups if file_marker(job.output, group[0]).exists()}
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
        top_k=job.top_k,
        truncation=job.truncation,
    )
    workers = connect(address, workers, threads)
    start = time.perf_counter()
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.use_datasource_v2 = False  # Ray 2.60's new Parquet reader lists files idly for seconds per pipeline
    context.enable_progress_bars = False  # ours below counts rows; Ray Data's warnings and errors still show
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled"
    written = rows_run = 0
    remaining = sum(rows for group, rows in groups if group[0] not in done)
    with progress.bar(f"{task} ({precision}) on Ray -> {job.output}", remaining, unit="rows") as advance:
        for group, rows in groups:
            if group[0] not in done:
                written += len(run_group(job, files, fmt, group, predictor, workers, threads, advance))
                rows_run += rows
    if not written + skipped:
        raise MbertEdgeError(f"{job.input} has no rows")
    (job.output / DONE_FILE).touch()
    return summarize(job.output, written, skipped, rows_run, time.perf_counter() - start)


def run_group(
    job: Job,
    files: list[Path],
    fmt: str,
    group: list[int],
    predictor: type,
    workers: int,
    threads: int,
    advance: Callable[[int], None],
) -> list[Path]:
    """One group of input files through one Ray Data pipeline written to a hidden staging folder, its parts then
    renamed into OUTPUT and the group marked done; returns its parts."""
    index, staging = group[0], job.output / STAGING
    for stale in file_parts(job.output, index):  # parts of a group an interrupted run was renaming
        stale.unlink()
    dataset = READERS[fmt]([str(files[i].resolve()) for i in group], **reader_options(fmt, job.text_columns))
    shutil.rmtree(staging, ignore_errors=True)
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
    write_with_progress(results, staging, advance)
    parts = []
    for number, part in enumerate(sorted(staging.glob("part-*.parquet"))):
        parts.append(job.output / f"part-{index:05d}-{number:05d}.parquet")
        os.replace(part, parts[-1])
    shutil.rmtree(staging, ignore_errors=True)
    file_marker(job.output, index).touch()
    return parts
