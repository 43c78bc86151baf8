"""The callable class that Ray Data's `map_batches` runs on a pool of actors: one loaded bundle per actor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from mbert_edge.batch.io import conform
from mbert_edge.batch.results import annotate
from mbert_edge.runtime import load


class BatchPredictor:
    """Loads the bundle once (per Ray actor), then adds the results to each pyarrow batch it is called on."""

    def __init__(
        self,
        bundle: str | Path,
        *,
        text_column: str = "text",
        pair_column: str | None = None,
        query_column: str | None = None,
        keep: list[str] | None = None,
        precision: str = "auto",
        intra_op_threads: int = 1,
        batch_size: int = 32,
        options: dict[str, Any] | None = None,
        truncation: str | None = None,
        schema: pa.Schema | None = None,
    ) -> None:
        """`pair_column`, `query_column`, `options` (the task's `predict` options, such as `top_k`): as `annotate`
        takes them; `keep`: the input columns to keep beside the results (default all); `intra_op_threads`: ONNX
        Runtime's threads, to match the CPUs each actor reserves (`num_cpus`); `schema`: the input's columns,
        to which each batch is cast first, so that files of one input that differ in column order, extra
        columns or types give output of one schema."""
        self.model = load(bundle, precision=precision, intra_op_threads=intra_op_threads)
        self.options: dict[str, Any] = {
            "pair_column": pair_column,
            "query_column": query_column,
            "keep": keep,
            "batch_size": batch_size,
            "options": options,
            "truncation": truncation,
        }
        self.text_column = text_column
        self.schema = schema

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.schema is not None:
            batch = conform(batch, self.schema)
        return annotate(self.model, batch, self.text_column, **self.options)


def ray_predictor(bundle: str | Path, **options: Any) -> type[BatchPredictor]:
    """A `BatchPredictor` class bound to `bundle` and `options` (`BatchPredictor`'s keywords), for
    `Dataset.map_batches(cls, batch_format="pyarrow", compute=ActorPoolStrategy(size=workers), num_cpus=threads)`.
    The path is opened as given on the node that runs each actor (relative: to the worker's directory, as
    with a runtime_env working_dir), so it must be readable there."""

    class BoundPredictor(BatchPredictor):
        def __init__(self) -> None:
            super().__init__(bundle, **options)

    return BoundPredictor
