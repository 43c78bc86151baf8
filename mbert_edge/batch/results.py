"""A model's results on a table's text column, as Arrow columns beside the input's, one error per bad row."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mbert_edge.errors import MbertEdgeError
from mbert_edge.runtime import QuestionAnswerer, Reranker, TaskModel
from mbert_edge.runtime.textinput import Pair, TextInput
from mbert_edge.tasks import PAIR_TRUNCATIONS, RELEVANCE_COLUMNS, TASKS, Column

ENTITY = pa.struct(
    [
        ("entity_group", pa.string()),
        ("score", pa.float32()),
        ("word", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
    ]
)
TOKEN_ENTITY = pa.struct(  # aggregation "none": each token with its own label
    [
        ("entity", pa.string()),
        ("score", pa.float32()),
        ("index", pa.int64()),
        ("word", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
    ]
)
ERROR_COLUMN = "error"


def result_columns(task: str, queried: bool = False) -> tuple[Column, ...]:
    """The columns of the results: the task's, or where rows are `queried` (`--query-column`) a cross-encoder's
    score; a question-answering bundle's rows (`--question-column`) keep its task's answer columns."""
    return RELEVANCE_COLUMNS if queried and not TASKS[task].questions else TASKS[task].columns


def output_columns(task: str, queried: bool = False) -> tuple[str, ...]:
    """The columns the results add to the input's."""
    return (*(column.name for column in result_columns(task, queried)), ERROR_COLUMN)


def as_text(texts: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column's other string forms as plain strings: dictionary-encoded (what pandas' `category` writes
    to Parquet) and string views. Any other type is left for `row_errors` to name."""
    encoded = pa.types.is_dictionary(texts.type)
    kind = texts.type.value_type if encoded else texts.type
    if pa.types.is_string_view(kind) or (encoded and (pa.types.is_string(kind) or pa.types.is_large_string(kind))):
        return texts.cast(pa.large_string())
    return texts


def not_utf8(
    table: pa.Table, names: list[str], locate: Callable[[int], str] | None
) -> tuple[pa.Table, list[str | None]]:
    """`table` with the bytes that are not UTF-8 in its string columns `names` replaced (U+FFFD), and per row
    None, or which of those columns were not UTF-8 and (by `locate`) where the row was read. pyarrow's JSON
    reader, and its CSV reader as `io.reader_options` sets it, leave strings' bytes unchecked; a column is
    checked whole by pyarrow (`validate`), and only one that fails is decoded here, a row at a time."""
    bad: list[list[str]] = [[] for _ in range(len(table))]
    for name in dict.fromkeys(names):
        column = table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        try:
            column.validate(full=True)
            continue
        except pa.ArrowInvalid:
            raw = column.cast(pa.large_binary()).to_pylist()
        texts = [None if value is None else value.decode("utf-8", "replace") for value in raw]
        table = table.set_column(table.column_names.index(name), name, pa.array(texts, column.type))
        for row, (value, text) in enumerate(zip(raw, texts)):
            if text is not None and text.encode("utf-8") != value:
                bad[row].append(name)
    errors: list[str | None] = [None] * len(table)
    for row, columns in enumerate(bad):
        if columns:
            errors[row] = f"not UTF-8 in {', '.join(columns)}" + (f": {locate(row)}" if locate else "")
    return table, errors


def row_errors(texts: pa.ChunkedArray) -> list[str | None]:
    """Per row: None for a text the model can read, else why not (null, empty or blank, not a string)."""
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        return ["null text" if value is None else f"not text ({texts.type})" for value in texts.to_pylist()]
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(texts), ""), False).to_pylist()
    return [
        "null text" if valid is False else "empty text" if empty else None
        for valid, empty in zip(pc.is_valid(texts).to_pylist(), blank)
    ]


def _caller(
    model: TaskModel, relevance: bool, batch_size: int, task_options: Mapping[str, Any], truncation: str | None
) -> Callable[[list[TextInput]], list[Any]]:
    """The model's call on a chunk of items, with the job's options."""
    options: dict[str, Any] = {"batch_size": batch_size, "truncation": truncation}
    if not relevance:
        options.update(task_options)

    def call(chunk: list[TextInput]) -> list[Any]:
        if relevance:
            return cast(Reranker, model).pair_scores(cast(list[Pair], chunk), **options).tolist()
        return list(model.predict(chunk, **options))

    return call


def check_columns(model: TaskModel, queries: bool) -> None:
    """Fail when the model cannot read rows so: a query column needs a cross-encoder or a question-answering
    bundle, which needs it."""
    answers = isinstance(model, QuestionAnswerer)
    if queries and not isinstance(model, Reranker) and not answers:
        raise MbertEdgeError("--query-column needs a cross-encoder bundle (a classifier with one relevance logit)")
    if answers and not queries:
        raise MbertEdgeError("a question-answering bundle reads each row's question: pass --question-column")


def check_options(
    model: TaskModel,
    queries: bool,
    pairs: bool,
    batch_size: int,
    task_options: Mapping[str, Any],
    truncation: str | None,
) -> None:
    """`check_columns`, then the call `annotate` makes on one made-up input of the job's shape (a pair, or a text
    holding the mask token), so that options the model refuses (a doc_stride over the window, a truncation the
    task does not take, targets outside the vocabulary) fail the job before its output exists, as one line.
    `queries`: rows have a query (or question) column; `pairs`: a second-text column."""
    check_columns(model, queries)
    relevance = queries and not isinstance(model, QuestionAnswerer)
    item: TextInput = ("a", "a") if queries or pairs else getattr(model, "mask_token", None) or "a"
    try:
        _caller(model, relevance, batch_size, task_options, truncation)([item])
    except (TypeError, ValueError) as exc:
        raise MbertEdgeError(f"{exc} (an option of this batch job)") from exc


def _predict(
    model: TaskModel,
    items: list[TextInput],
    relevance: bool,
    batch_size: int,
    task_options: Mapping[str, Any],
    truncation: str | None,
    advance: Callable[[int], None],
    chunk_size: int,
) -> list[Any]:
    """The model's results for `items` (texts, or pairs of texts; with `relevance`, each (query, document) pair's
    score), `chunk_size` at a time so that `advance` moves with them."""
    call = _caller(model, relevance, batch_size, task_options, truncation)
    results: list[Any] = []
    for start in range(0, len(items), chunk_size):
        chunk = items[start : start + chunk_size]
        results.extend(call(chunk))
        advance(len(chunk))
    return results


# The Arrow type of each kind of column a task's registry entry names (a vector's width is the model's).
FILL = pa.struct(
    [("score", pa.float32()), ("token", pa.int64()), ("token_str", pa.string()), ("sequence", pa.string())]
)
KINDS = {
    "string": pa.string(),
    "float32": pa.float32(),
    "int64": pa.int64(),
    "entities": pa.list_(ENTITY),
    "fills": pa.list_(pa.list_(FILL)),  # a list per mask token, also for a text with one
}


def _vectors(results: list[Any], width: int) -> pa.Array:
    vectors = np.zeros((len(results), width), np.float32)
    for row, vector in enumerate(results):
        if vector is not None:
            vectors[row] = vector
    mask = pa.array([vector is None for vector in results])
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), width, mask=mask)


def _column(column: Column, results: list[Any], width: int, options: Mapping[str, Any]) -> pa.Array:
    """One column of the results (None where a row has none): a result's `key` field, or a list of them where
    each result is a list (the task's `top_k` > 1), or the whole result."""
    if column.kind == "vector":
        return _vectors(results, width)
    tokens = column.kind == "entities" and options.get("aggregation") == "none"
    kind = pa.list_(TOKEN_ENTITY) if tokens else KINDS[column.kind]
    listed = options.get("top_k") not in (None, 1)
    if column.kind == "fills":  # the pipeline gives a text with one mask that mask's list alone
        results = [r if r is None or isinstance(r[0], list) else [r] for r in results]
    if column.key is None:
        return pa.array(results, kind)
    values = [r and ([x[column.key] for x in r] if listed else r[column.key]) for r in results]
    return pa.array(values, pa.list_(kind) if listed else kind)


def _checked_rows(
    table: pa.Table, columns: list[str], unreadable: list[str | None]
) -> tuple[list[str | None], list[list[str]]]:
    """Per row its error (None: readable), and each column's texts of the rows without one. An error in a column
    other than the first names it."""
    errors = list(unreadable)
    for index, name in enumerate(columns):
        for row, error in enumerate(row_errors(as_text(table.column(name)))):
            if errors[row] is None and error is not None:
                errors[row] = error if index == 0 else f"{error} in {name}"
    good = pa.array([row for row, error in enumerate(errors) if error is None], pa.int64())
    return errors, [pc.take(as_text(table.column(name)), good).to_pylist() for name in columns]


def annotate(
    model: TaskModel,
    table: pa.Table,
    text_column: str,
    *,
    pair_column: str | None = None,
    query_column: str | None = None,
    keep: list[str] | None = None,
    batch_size: int = 32,
    options: Mapping[str, Any] | None = None,
    truncation: str | None = None,
    advance: Callable[[int], None] = lambda n: None,
    chunk_size: int | None = None,
    locate: Callable[[int], str] | None = None,
) -> pa.Table:
    """`table` (or its `keep` columns) with the results of `model` on `text_column`, and an `error` column
    that names why a row has no result. Bad rows never stop the others. With `pair_column`, each row is read as
    the pair (text, text_pair); with `query_column`, as (query, text), scored by a cross-encoder (`Reranker`): a
    `score` column; or as (question, context), answered by a `QuestionAnswerer`, which needs it. `options`: the
    task's own `predict` options (`top_k`, `aggregation`, `doc_stride`, ...: its `predict_options` in
    `mbert_edge.tasks`); `truncation`: as the model's `predict` takes it (None: the task's default); `locate`: where
    a row of `table` was read, named in the error of a row that is not UTF-8."""
    options = options or {}
    answers = isinstance(model, QuestionAnswerer)
    check_columns(model, query_column is not None)
    second = pair_column or query_column
    columns = [text_column, *([second] if second else [])]
    table, unreadable = not_utf8(table, [*columns, *(keep or table.column_names)], locate)
    errors, read = _checked_rows(table, columns, unreadable)
    if TASKS[model.task].masked:  # a text whose first window holds no mask token has nothing to fill
        readable = [row for row, error in enumerate(errors) if error is None]
        for row, window in zip(readable, model.runner.first_windows(read[0])):
            if model.runner.gathered_id not in window.ids:
                errors[row] = f"no mask token in its first {model.max_length} tokens"
        read = [[text for row, text in zip(readable, read[0]) if errors[row] is None]]
    good = [row for row, error in enumerate(errors) if error is None]
    items: list[TextInput] = list(read[0])
    if second:
        items = list(zip(read[1], read[0]) if query_column else zip(read[0], read[1]))
    default = "window" if query_column else PAIR_TRUNCATIONS[0] if pair_column else model.default_truncation
    if (truncation or default) == "window":  # a text too long to read whole is its row's error
        fix = (
            "split the context" if answers else "pass --truncation only_second" if second else "pass --truncation head"
        )
        for row, item in zip(good, items):
            if error := model.window_error(item, options):
                errors[row] = str(error) if error.no_room else f"{error}; {fix}"
    elif second:  # a pair that "only_first" or "only_second" cannot cut is its row's error
        for row, error in zip(good, model.runner.cut_errors(cast(list[Pair], items), truncation or default)):
            if error:
                errors[row] = str(error)
    kept = [(row, item) for row, item in zip(good, items) if errors[row] is None]
    good, items = [row for row, _ in kept], [item for _, item in kept]
    predicted = _predict(
        model,
        items,
        query_column is not None and not answers,
        batch_size,
        options,
        truncation,
        advance,
        chunk_size or 8 * batch_size,
    )
    advance(len(errors) - len(good))
    results: list[Any] = [None] * len(errors)
    for row, result in zip(good, predicted):
        results[row] = result
    out = table.select(keep) if keep is not None else table
    width = model.bundle.manifest.hidden_size
    for name, column in {
        **{c.name: _column(c, results, width, options) for c in result_columns(model.task, query_column is not None)},
        ERROR_COLUMN: pa.array(errors, pa.string()),
    }.items():
        out = out.append_column(name, column)
    return out
