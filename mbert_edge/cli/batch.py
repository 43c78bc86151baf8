"""The click command `mbert-edge batch`. pyarrow and Ray are imported only when it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mbert_edge.batch.formats import FORMATS
from mbert_edge.bundle import Bundle
from mbert_edge.cli.common import BATCH_SIZE, PRECISION, TRUNCATION, NonEmptyPath, task_option_refusal, task_options
from mbert_edge.progress import Progress
from mbert_edge.tasks import TASKS


@click.command()
@click.argument("bundle", type=NonEmptyPath(exists=True, file_okay=False, path_type=Path))
@click.argument("input_path", metavar="INPUT", type=NonEmptyPath(exists=True, path_type=Path))
@click.argument("output", type=NonEmptyPath(file_okay=False, path_type=Path))
@click.option("--text-column", default="text", show_default=True, help="The column holding the texts.")
@click.option(
    "--pair-column",
    default=None,
    help="The column holding each row's second text: rows are read as (text, text_pair) pairs (a premise and its "
    "hypothesis); text classification only.",
)
@click.option(
    "--query-column",
    default=None,
    help="The column holding each row's query: rows are (query, text) pairs scored by a cross-encoder bundle, "
    "into a score column (sort by query and score to rank).",
)
@click.option(
    "--question-column",
    default=None,
    help="The column holding each row's question: rows are (question, context) pairs, the text column holding the "
    "contexts, answered by a question-answering bundle into answer, score, start and end columns.",
)
@click.option(
    "--id-column",
    default=None,
    help="Keep only this input column beside the results (default: keep all input columns).",
)
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default=None, help="Input format (default: from the file names)."
)
@BATCH_SIZE
@PRECISION
@task_options
@TRUNCATION
@click.option(
    "--part-rows",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Rows per output part: the unit of resumption (and of memory) on one machine. On Ray, input files "
    "run in groups of at least this many rows (the unit of resumption there), in parts of at most this many.",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Run on Ray: alone, a local Ray instance; with ADDRESS (host:port), join that cluster.",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=None,
    help="--ray: actors, one bundle each (default: the cluster's CPUs less one for Ray Data's reading, "
    "/ --threads-per-worker).",
)
@click.option(
    "--threads-per-worker",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="--ray: CPUs each actor reserves, and ONNX Runtime threads it runs.",
)
def batch(
    bundle: Path,
    input_path: Path,
    output: Path,
    text_column: str,
    pair_column: str | None,
    query_column: str | None,
    question_column: str | None,
    id_column: str | None,
    fmt: str | None,
    batch_size: int,
    precision: str,
    truncation: str | None,
    part_rows: int,
    ray_address: str | None,
    workers: int | None,
    threads_per_worker: int,
    **options: Any,
) -> None:
    """Run BUNDLE on the text column of INPUT (a Parquet, JSON Lines or CSV file, or a folder of them) and
    write OUTPUT: a folder of Parquet parts with the input's columns, the results (label and score, entities,
    or an embedding) and an `error` column for rows that have no result. The task's own options (--top-k,
    --aggregation, --doc-stride, ...) apply as `predict` takes them. Rerun the same command to resume."""
    from mbert_edge.batch.extras import require

    require("pyarrow", "ray" if ray_address else "batch")
    from mbert_edge.batch.job import Job, run_local

    opened = Bundle.open(bundle)
    given = {name: value for name, value in options.items() if value is not None}
    refusal = task_option_refusal(bundle, opened.task, given) or _column_refusal(
        opened, pair_column, query_column, question_column, given
    )
    if refusal:
        raise click.UsageError(refusal)
    job = Job(
        bundle=bundle,
        input=input_path,
        output=output,
        text_column=text_column,
        pair_column=pair_column,
        query_column=query_column or question_column,
        id_column=id_column,
        format=fmt,
        precision=precision,
        batch_size=batch_size,
        options=given,
        truncation=truncation,
        part_rows=part_rows,
    )
    if ray_address is None:
        if workers is not None or threads_per_worker != 1:
            raise click.UsageError("--workers and --threads-per-worker apply to --ray runs only")
        summary = run_local(job, Progress())
    else:
        require("ray", "ray")
        from mbert_edge.batch.ray_job import run_on_ray

        summary = run_on_ray(
            job, None if ray_address == "local" else ray_address, workers, threads_per_worker, Progress()
        )
    click.echo(summary.line())


def _column_refusal(
    opened: Bundle,
    pair_column: str | None,
    query_column: str | None,
    question_column: str | None,
    options: dict[str, Any],
) -> str | None:
    """Why --pair-column, --query-column or --question-column does not fit the bundle (or each other), or None."""
    if sum(c is not None for c in (pair_column, query_column, question_column)) > 1:
        return (
            "--pair-column, --query-column and --question-column read a row's second text in different ways: give one"
        )
    questions = TASKS[opened.task].questions
    if questions and question_column is None:
        return (
            f"{opened.path} is a question-answering bundle; pass --question-column, the column of each row's question"
        )
    if question_column is not None and not questions:
        return f"{opened.path} is a {opened.task} bundle; --question-column needs a question-answering bundle"
    if pair_column is not None and (not TASKS[opened.task].pairs or questions):
        return f"{opened.path} is a {opened.task} bundle; --pair-column needs a text classification bundle"
    if query_column is not None and len(opened.manifest.labels or []) != 1:
        return f"{opened.path} is not a cross-encoder bundle (one relevance logit); --query-column needs one"
    if query_column is not None and options:
        flags = ", ".join("--" + name.replace("_", "-") for name in options)
        return f"{flags} applies to labels; --query-column gives each row one score"
    return None
