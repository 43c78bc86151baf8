"""`mbert-edge batch --ray`: Ray Data reads the input, a pool of actors runs the bundle, Ray writes Parquet."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import ray
import ray.data
from ray.data.datasource import FilenameProvider

from mbert_edge.errors import MbertEdgeError
from mbert_edge.loading import load

from mbert_edge.batch.io import input_files, reader_options
from mbert_edge.batch.job import DONE_FILE, Job, Summary, describe, kept_columns, start_output, summarize
from mbert_edge.batch.predictor import ray_predictor

READERS = {"parquet": ray.data.read_parquet, "jsonl": ray.data.read_json, "csv": ray.data.read_csv}
STAGING = ".ray-staging"  # hidden from readers of OUTPUT until the run completes


class PartNames(FilenameProvider):
    """`part-00000.parquet`, ... in the order of Ray's write tasks (the input's order, as order is preserved)."""

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"part-{task_index:05d}.parquet"


def connect(address: str | None) -> None:
    """Join the cluster at `address`, or start a local Ray instance (None)."""
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=False)


def run_on_ray(job: Job, address: str | None, workers: int | None, threads: int) -> Summary:
    """Run `job` on Ray: `workers` actors (default: the cluster's CPUs / `threads`), each reserving `threads`
    CPUs and running ONNX Runtime with as many threads. Output appears in OUTPUT only once complete; a rerun
    of an interrupted job runs it again (a finished one is not rerun)."""
    files, fmt = input_files(job.input, job.format)
    probe = load(job.bundle, precision=job.precision, intra_op_threads=1)  # fail here, before starting Ray
    task, precision = probe.task, probe.precision
    del probe
    start_output(job.output, describe(job, task, precision, files, fmt, engine="ray"))
    if (job.output / DONE_FILE).exists():
        return summarize(job.output, 0, len(list(job.output.glob("part-*.parquet"))), 0, 0.0)
    start = time.perf_counter()
    connect(address)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    dataset = READERS[fmt]([str(f.resolve()) for f in files], **reader_options(fmt, job.text_column))
    keep = kept_columns(dataset.schema().names, job, task)
    workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    predictor = ray_predictor(job.bundle, text_column=job.text_column, keep=keep, precision=precision,
                              intra_op_threads=threads, batch_size=job.batch_size, top_k=job.top_k)
    staging = job.output / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    results = dataset.map_batches(predictor, batch_format="pyarrow", batch_size=8 * job.batch_size,
                                  concurrency=workers, num_cpus=threads)
    results.write_parquet(str(staging), filename_provider=PartNames(), min_rows_per_file=job.part_rows)
    parts = sorted(staging.glob("part-*.parquet"))
    if not parts:
        raise MbertEdgeError(f"{job.input} has no rows")
    for part in parts:
        os.replace(part, job.output / part.name)
    shutil.rmtree(staging)
    (job.output / DONE_FILE).touch()
    return summarize(job.output, len(parts), 0, None, time.perf_counter() - start)
