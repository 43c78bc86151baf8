"""Extractive question answering on M-BERT's shape (BertForQuestionAnswering, 384-token windows, contexts of a few
windows each): our FP32 and both INT8 methods beside transformers' question-answering pipeline (PyTorch FP32, in
a worker process with transformers 4.57, which still has the pipeline), one question at a time and 8 at once, in
alternating rounds, the same threads. Also how often each variant's answer is FP32's.

    python benchmarks/mbert_shaped.py --question-answering --out ~/.cache/mbert-edge/mbert-qa
    python -m venv /tmp/tf457 && /tmp/tf457/bin/pip install --no-deps transformers==4.57.6 tokenizers==0.22.2 \\
        huggingface-hub==0.36.2 && python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \\
        > /tmp/tf457/lib/python3.11/site-packages/parent.pth      # torch and the rest from this environment
    python benchmarks/question_answering.py ~/.cache/mbert-edge/mbert-qa --data ../shared/data/tatoeba \\
        --work ~/.cache/mbert-edge/question-answering --reference-python /tmp/tf457/bin/python [--json FILE]

Each question is a sentence of a `--data` group; its context is `--context-sentences` sentences of the same group
(the question's among them), taken from each group in turn.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import click
from json_output import JSON_OPTION, echo_table, write_json
from variants import bundles, timing_options

from mbert_edge.bench.measure import machine, side_by_side
from mbert_edge.bench.report import machine_line
from mbert_edge.runtime import QuestionAnswerer
from mbert_edge.textdata import load_textset

WINDOW = 384  # the pipeline's default max_seq_len


class PipelineWorker:
    """The question-answering pipeline in a process of its own (a Python with transformers 4.57)."""

    def __init__(self, python: Path, checkpoint: Path, threads: int, cases: list[tuple[str, str]]) -> None:
        script = Path(__file__).with_name("qa_pipeline.py")
        self.process = subprocess.Popen(
            [str(python), str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        setup = {"checkpoint": str(checkpoint), "threads": threads, "max_seq_len": WINDOW, "cases": cases}
        self.version = self._ask(json.dumps(setup))["version"]

    def _ask(self, line: str) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            raise click.ClickException("the pipeline worker stopped; run it alone to see why")
        return json.loads(reply)

    def answer(self, count: int) -> Any:
        return self._ask(str(count))

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def questions(data: Path, count: int, sentences: int) -> list[tuple[str, str]]:
    """`count` (question, context) pairs, from each group in turn: a sentence and the `sentences` around it."""
    groups = [list(texts) for texts in load_textset(data).sentences().values()]
    made = []
    for index in itertools.count():
        for group in groups:
            start = (index * sentences) % max(1, len(group) - sentences)
            context = [str(s) for s in group[start : start + sentences]]
            made.append((context[len(context) // 2], " ".join(context)))
            if len(made) == count:
                return made
    raise AssertionError("unreachable")


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="Sentences (Tatoeba).")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), required=True, help="The bundles' folder.")
@click.option(
    "--reference-python",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="A Python with transformers 4.57 (see above).",
)
@click.option("--texts", default=8, show_default=True, help="Questions of the batched call.")
@click.option("--context-sentences", default=40, show_default=True, help="Sentences per context.")
@timing_options(rounds=3, per_round=1)
@JSON_OPTION
def main(
    checkpoint: Path,
    data: Path,
    work: Path,
    reference_python: Path,
    texts: int,
    context_sentences: int,
    rounds: int,
    per_round: int,
    threads: int,
    json_file: Path | None,
) -> None:
    work.mkdir(parents=True, exist_ok=True)
    variants = bundles(checkpoint, work, max_length=WINDOW)
    models = {name: QuestionAnswerer(b, precision=p, intra_op_threads=threads) for name, (b, p) in variants.items()}
    fp32 = models["mbert-edge FP32"]
    cases = questions(data, texts, context_sentences)
    batch_q, batch_c = [q for q, _ in cases], [c for _, c in cases]
    windows = [len(group) for group in fp32.runner.pair_windows(cases, "window", fp32.doc_stride())]
    worker = PipelineWorker(reference_python, checkpoint, threads, cases)
    try:
        torch_name = f"transformers {worker.version} question-answering pipeline (PyTorch FP32)"
        calls: dict[str, Any] = {
            f"{name}, 1 question": (lambda m=m: m.answer(batch_q[0], batch_c[0])) for name, m in models.items()
        }
        calls[f"{torch_name}, 1 question"] = lambda: worker.answer(1)
        calls.update(
            {f"{name}, {texts} questions": (lambda m=m: m.answer(batch_q, batch_c)) for name, m in models.items()}
        )
        calls[f"{torch_name}, {texts} questions"] = lambda: worker.answer(texts)
        timings = side_by_side(calls, rounds, per_round)
        theirs = worker.answer(texts)
    finally:
        worker.close()
    reference = fp32.answer(batch_q, batch_c)
    same = {
        name: sum(a["answer"] == b["answer"] for a, b in zip(m.answer(batch_q, batch_c), reference)) / texts
        for name, m in models.items()
        if name != "mbert-edge FP32"
    }
    same[torch_name] = sum(a["answer"] == b["answer"] for a, b in zip(theirs, reference)) / texts
    figures = {
        "machine": machine("onnxruntime", "torch"),
        "questions": texts,
        "window": WINDOW,
        "doc_stride": fp32.doc_stride(),
        "windows_per_context": {"min": min(windows), "max": max(windows), "mean": sum(windows) / len(windows)},
        "threads": threads,
        "ms": timings,
        "same_answer_as_our_fp32": same,
    }
    click.echo(machine_line(figures["machine"]))
    click.echo(
        f"\n{texts} questions, contexts of {min(windows)}-{max(windows)} windows of {WINDOW} tokens "
        f"(doc_stride {fp32.doc_stride()}); ms per call, median of {rounds} alternating rounds\n"
    )
    echo_table("variant", "ms", timings)
    click.echo()
    echo_table("variant", "answers equal to our FP32's", same, ".3f")
    write_json(json_file, figures)


if __name__ == "__main__":
    main()
