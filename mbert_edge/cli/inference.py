"""Commands that need only the runtime: `predict`, `rank`, `info`, `verify`, `bench`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..bench.measure import BATCH_SIZES, LENGTHS
from ..bundle import TOKENIZER_NAME, Bundle, RuntimeSettings, check_writable
from ..progress import Progress
from ..runtime import Reranker, Runner, load
from ..runtime.accuracy import compare, gate_failure, markdown
from ..runtime.textinput import TextInput, encodable
from ..tasks import PAIR_TRUNCATIONS, TASKS
from ..textdata import builtin_sample, load_textset, model_texts, with_masks
from .common import (
    BATCH_SIZE,
    DATA_HELP,
    MAX_BATCH_SIZE,
    PRECISION,
    TRUNCATION,
    NonEmptyPath,
    Numbers,
    size_text,
    task_option_refusal,
    task_options,
)


class _InputLines:
    """TEXTS, then the lines of --input, read lazily so that a large file streams. Lines end at "\n" alone
    (a "\r\n" ending is dropped, a "\r" inside a line kept), the same from a file and from stdin, so output
    line N answers input line N. A line that is not UTF-8 ends the input there: the lines before it are
    answered, then `failure` says which line it was. A text argument's bytes that are not UTF-8 (which Python
    keeps as lone surrogates) are read, and echoed, as U+FFFD."""

    def __init__(self, texts: tuple[str, ...], input_file: str | None) -> None:
        if input_file is None and not texts:
            raise click.UsageError("give texts as arguments or --input FILE (- for stdin)")
        self.texts, self.name = texts, input_file
        self.failure: str | None = None
        try:  # opened now, so that an unreadable path fails before any work
            self.stream = (
                None if input_file is None else sys.stdin.buffer if input_file == "-" else open(input_file, "rb")  # noqa: SIM115 (closed by lines())
            )
        except OSError as exc:
            raise click.ClickException(f"cannot read --input {input_file}: {exc.strerror or exc}") from exc

    def __iter__(self) -> Iterator[str]:
        yield from map(encodable, self.texts)
        if self.stream is None:
            return
        with self.stream:
            for number, raw in enumerate(self.stream, start=1):
                try:
                    yield raw.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8")
                except UnicodeDecodeError as exc:
                    self.failure = (
                        f"line {number} of --input {self.name} is not UTF-8 text ({exc.reason} at byte {exc.start})"
                    )
                    return


@click.command()
@click.argument("bundle", type=NonEmptyPath(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--input", "input_file", default=None, help="One text per line; - reads stdin.")
@PRECISION
@BATCH_SIZE
@task_options
@TRUNCATION
@click.option(
    "--pair-separator",
    default=None,
    help="Each input is a pair of texts (a premise and its hypothesis, a question and its context, ...) split at "
    r"this separator's first occurrence ('\t': a tab, for TSV lines); sequence classification and question "
    "answering.",
)
@click.option(
    "--question", default=None, help="Question answering: the question asked of each text, which is its context."
)
def predict(
    bundle: Path,
    texts: tuple[str, ...],
    input_file: str | None,
    precision: str,
    batch_size: int,
    truncation: str | None,
    pair_separator: str | None,
    question: str | None,
    **task_settings: Any,
) -> None:
    """Run BUNDLE on TEXTS (or --input lines), one JSON line per input: {"label", "score"} for
    classification, a list of entities for token classification, a vector for embeddings, the likeliest tokens
    per mask for fill-mask, {"score", "start", "end", "answer"} for question answering."""
    opened = Bundle.open(bundle)
    task = opened.task
    refusal = task_option_refusal(bundle, task, task_settings)
    if pair_separator is not None and not TASKS[task].pairs:
        refusal = f"{bundle} is a {task} bundle; --pair-separator applies to {' and '.join(pair_tasks())} bundles only"
    if question is not None and not TASKS[task].questions:
        refusal = f"{bundle} is a {task} bundle; --question applies to question-answering bundles only"
    if TASKS[task].questions and (question is None) == (pair_separator is None):
        refusal = (
            f"{bundle} is a question-answering bundle: give --question (each text is a context), or "
            "--pair-separator with QUESTION<separator>CONTEXT inputs; not both"
        )
    if refusal:
        raise click.ClickException(refusal)
    if pair_separator == "":
        raise click.BadParameter(
            "is empty; give what stands between a pair's two texts, e.g. '\\t'", param_hint="--pair-separator"
        )
    given = {"batch_size": batch_size, "truncation": truncation, **task_settings}
    options = {k: v for k, v in given.items() if v is not None}
    inputs = _InputLines(texts, input_file)
    model = load(opened, precision=precision)
    items: _InputLines | _InputPairs | _Asked = inputs
    if pair_separator is not None:
        items = _InputPairs(inputs, {r"\t": "\t"}.get(pair_separator, pair_separator))
    elif question is not None:
        items = _Asked(inputs, question)
    try:
        for result in model.iter_predict(items, chunk_size=8 * batch_size, **options):
            click.echo(json.dumps(result.tolist() if isinstance(result, np.ndarray) else result, ensure_ascii=False))
    except (ValueError, TypeError) as exc:  # the runtime's checks of an input or an option's value
        raise click.ClickException(str(exc)) from exc
    if items.failure:
        raise click.ClickException(f"{items.failure}; the inputs before it were answered")


class _InputPairs:
    """The inputs of `lines` as pairs, each split at the separator's first occurrence. An input without it ends
    the input there: the pairs before it are answered, then `failure` says which input it was."""

    def __init__(self, lines: _InputLines, separator: str) -> None:
        self.lines, self.separator = lines, separator
        self.failure: str | None = None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for number, line in enumerate(self.lines, start=1):
            text, found, text_pair = line.partition(self.separator)
            if not found:
                self.failure = (
                    f"input {number} has no --pair-separator {self.separator!r}: give each pair as "
                    f"TEXT{self.separator}TEXT_PAIR"
                )
                return
            yield text, text_pair
        self.failure = self.lines.failure


class _Asked:
    """(question, input) for each input of `lines`: one question asked of every context."""

    def __init__(self, lines: _InputLines, question: str) -> None:
        self.lines, self.question = lines, question

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((self.question, line) for line in self.lines)

    @property
    def failure(self) -> str | None:
        return self.lines.failure


def pair_tasks() -> list[str]:
    return [name for name, task in TASKS.items() if task.pairs]


@click.command()
@click.argument("bundle", type=NonEmptyPath(path_type=Path))
@click.argument("query")
@click.argument("documents", nargs=-1)
@click.option("--input", "input_file", default=None, help="One document per line; - reads stdin.")
@PRECISION
@BATCH_SIZE
@click.option(
    "--top-k", type=click.IntRange(1), default=None, help="Only the K most relevant documents (default: all)."
)
@click.option("--raw-scores", is_flag=True, help="The relevance logit instead of its sigmoid.")
@click.option(
    "--truncation",
    type=click.Choice(PAIR_TRUNCATIONS),
    default=None,
    help="A document over the max length with the query: window (the default) reads all of it in windows with the "
    "query whole in each, the best window counting; only_second reads its head; longest_first cuts the longer "
    "of query and document first.",
)
def rank(
    bundle: Path,
    query: str,
    documents: tuple[str, ...],
    input_file: str | None,
    precision: str,
    batch_size: int,
    top_k: int | None,
    raw_scores: bool,
    truncation: str | None,
) -> None:
    """Rank DOCUMENTS (or --input lines) by relevance to QUERY with a cross-encoder BUNDLE (a classifier with one
    relevance logit): one JSON line per document, best first, {"index", "score", "text"}."""
    model = load(bundle, precision=precision)
    if not isinstance(model, Reranker):
        raise click.ClickException(
            f"{bundle} has {len(model.labels or [])} labels; rank needs a cross-encoder bundle (one relevance logit)"
        )
    inputs = _InputLines(documents, input_file)
    docs = list(inputs)  # ranking needs them all
    if inputs.failure:
        raise click.ClickException(f"{inputs.failure}; nothing was ranked")
    for ranked in model.rank(encodable(query), docs, top_k, True, raw_scores, batch_size, truncation):
        click.echo(json.dumps(ranked, ensure_ascii=False))


@click.command()
@click.argument("bundle", type=NonEmptyPath(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the raw manifest.")
def info(bundle: Path, as_json: bool) -> None:
    """Describe BUNDLE: task, labels, models, parity and accuracy figures, versions."""
    opened = Bundle.open(bundle)
    m = opened.manifest
    if as_json:
        click.echo(json.dumps(m.to_json(), indent=2, ensure_ascii=False))
        return
    click.echo(f"bundle       {opened.path}")
    click.echo(f"task         {m.task}")
    click.echo(f"source       {m.source.model} ({m.source.architecture})")
    click.echo(
        f"shape        {m.num_hidden_layers} layers, hidden {m.hidden_size}, "
        f"{m.num_attention_heads} heads, vocab {m.vocab_size}"
    )
    click.echo(f"max length   {m.max_length} tokens; inputs {', '.join(m.inputs)}")
    if m.labels:
        click.echo(f"labels       {', '.join(f'{i}={label}' for i, label in enumerate(m.labels))}")
    if m.pooling:
        click.echo(f"pooling      {m.pooling} (in the graph; the runtime L2-normalises)")
    for precision, name in m.models.items():
        missing = [f for f in opened.model_files(name) if not (opened.path / f).is_file()]
        size = f"MISSING {', '.join(missing)}: re-run export or quantize" if missing else size_text(opened.path / name)
        click.echo(f"model        {precision}: {name} ({size})")
    if not (opened.path / TOKENIZER_NAME).is_file():
        click.echo(f"tokenizer    MISSING {TOKENIZER_NAME}: re-run export")
    parity = m.export.parity
    click.echo(f"parity       max |ONNX - PyTorch| {parity.max_abs_diff:.2e} (atol {m.export.atol:g})")
    for lang, row in parity.languages.items():
        click.echo(f"  {lang:<14} n={row.sentences:<5} max {row.max_abs_diff:.2e}  mean {row.mean_abs_diff:.2e}")
    if m.optimization:
        o = m.optimization
        click.echo(
            f"fusion       {', '.join(f'{k} {v}' for k, v in o.fused_operators.items())} (contract "
            f"{'holds' if o.contract_holds else 'PARTIAL'}); fused max |ONNX - PyTorch| {o.parity.max_abs_diff:.2e}"
        )
    else:
        click.echo("fusion       none (exported with --no-optimize)")
    q = m.quantization
    if q:
        overall, config = q.overall, q.config
        figure = (
            f"agreement {overall['agreement']:.4f} (worst {overall['worst_group']} {overall['worst_agreement']:.4f})"
            if TASKS[m.task].labelled
            else f"cosine mean {overall['mean_cosine']:.4f} min {overall['min_cosine']:.4f}"
        )
        invariant = "batch-invariant" if config.batch_invariant else "results depend on batch-mates"
        click.echo(
            f"int8         {'kept' if q.passed else 'REJECTED'}: {config.method} ({invariant}), preset "
            f"{config.preset}, {config.method_settings.describe()}; {figure} on {config.data or 'the built-in sample'}"
        )
    if m.trim:
        t = m.trim
        click.echo(
            f"trim         {t.mode} ({', '.join(t.scripts)}): kept {t.kept:,} of {t.original_vocab_size:,} tokens"
        )
    if m.runtime:
        click.echo(
            f"runtime      intra_op_threads {m.runtime.intra_op_threads} "
            f"(from `bench --save` on {m.runtime.measured_on})"
        )
    click.echo("versions     " + ", ".join(f"{k} {v}" for k, v in m.versions.items()))


@click.command()
@click.argument("bundle", type=NonEmptyPath(path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None, help=DATA_HELP)
@click.option(
    "--precision",
    type=click.Choice(["int8", "fp32"]),
    default="int8",
    show_default=True,
    help="The model compared with FP32 (fp32 reports task accuracy of the float model).",
)
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    default=None,
    help="Exit 1 below this top-1 agreement, judged as quantize's gate is (overall, and each language "
    "with enough decisions).",
)
@click.option(
    "--min-cosine", type=click.FloatRange(-1, 1), default=None, help="Exit 1 when any embedding's cosine is lower."
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write JSON here.")
def verify(
    bundle: Path,
    data: Path | None,
    precision: str,
    min_agreement: float | None,
    min_cosine: float | None,
    out: Path | None,
) -> None:
    """Re-run the accuracy report of BUNDLE's INT8 (or FP32) model against FP32 on any data."""
    opened = Bundle.open(bundle)
    if out is not None:
        check_writable(out.parent, out.name)
    texts = model_texts(data, opened.manifest)
    reference = Runner.open(opened, "fp32")
    candidate = reference if precision == "fp32" else Runner.open(opened, precision)
    with Progress().bar(f"comparing {precision} with fp32", len(texts)) as advance:
        report = compare(opened.task, reference, candidate, texts, advance=advance)
    click.echo(markdown(report))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    failure = gate_failure(
        report, min_agreement if min_agreement is not None else 0.0, min_cosine if min_cosine is not None else -1.0
    )
    if failure:
        raise click.ClickException(f"below the threshold: {failure}")


@click.command()
@click.argument("bundle", type=NonEmptyPath(path_type=Path))
@click.option(
    "--data",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Real sentences for end-to-end and throughput figures (default: the built-in sample).",
)
@click.option(
    "--precision",
    type=click.Choice(["all", "fp32", "int8"]),
    default="all",
    show_default=True,
    help="Which of the bundle's models to measure.",
)
@click.option(
    "--lengths",
    type=Numbers(),
    default=",".join(map(str, LENGTHS)),
    show_default=True,
    help="Exact sequence lengths (each capped at the bundle's max length).",
)
@click.option(
    "--batch-sizes",
    type=Numbers(MAX_BATCH_SIZE),
    default=",".join(map(str, BATCH_SIZES)),
    show_default=True,
    help="Throughput batch sizes.",
)
@click.option("--runs", type=click.IntRange(1), default=20, show_default=True, help="Minimum timed runs per figure.")
@click.option(
    "--max-seconds",
    type=float,
    default=3.0,
    show_default=True,
    help="Keep sampling fast figures up to this long (up to 10x --runs).",
)
@click.option(
    "--cold-start/--no-cold-start",
    default=True,
    show_default=True,
    help="Also time fresh processes importing, loading and predicting once, and their peak RSS.",
)
@click.option("--threads/--no-threads", "sweep", default=True, show_default=True, help="Sweep intra-op threads.")
@click.option("--save", is_flag=True, help="Store the recommended thread count in the bundle's manifest.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write bench.json, bench.md, latency.png and throughput.png here.",
)
def bench(
    bundle: Path,
    data: Path | None,
    precision: str,
    lengths: tuple[int, ...],
    batch_sizes: tuple[int, ...],
    runs: int,
    max_seconds: float,
    cold_start: bool,
    sweep: bool,
    save: bool,
    out: Path | None,
) -> None:
    """Latency, throughput, cold start, memory and threads of BUNDLE on this machine."""
    from ..bench import measure, report

    opened = Bundle.open(bundle)
    if save and not sweep:
        raise click.UsageError("--save stores the thread sweep's recommendation: drop --no-threads")
    if save:
        check_writable(opened.path, "the thread setting (--save)")
    if out is not None:
        check_writable(out, "the report files (--out)")
    precisions = [p for p in ("fp32", "int8") if p in opened.models and precision in ("all", p)]
    if not precisions:
        opened.resolve_precision(precision)  # raises the usual "no int8 model; run quantize" error
    task = TASKS[opened.task]
    texts = load_textset(data) if data else builtin_sample(questions=task.questions)
    if task.questions and any(isinstance(t, str) for group in texts.texts.values() for t in group):
        raise click.UsageError(
            "a question-answering bundle is measured on questions with contexts: give --data as .tsv files of "
            "question<TAB>context lines (or no --data: the built-in questions)"
        )
    # fill-mask: each text needs a mask token; question answering reads (question, context) pairs
    sentences: dict[str, list[TextInput]] = texts.texts
    if not task.questions:
        singles = with_masks(texts, opened.manifest.special_tokens["mask"].token) if task.masked else texts
        sentences = {group: list(items) for group, items in singles.sentences().items()}
    results = measure.run(
        bundle,
        sentences,
        precisions,
        lengths,
        batch_sizes,
        runs,
        max_seconds,
        cold_start,
        sweep,
        Progress(),
    )
    if save:
        threads = results["thread_sweep"]["recommended_intra_op_threads"]
        opened.manifest.runtime = RuntimeSettings(threads, results["machine"]["cpu"])
        opened.save()
        results["saved"] = True
    click.echo(report.markdown(results))
    if out is not None:
        for path in report.write(results, out):
            click.echo(f"wrote {path}")
