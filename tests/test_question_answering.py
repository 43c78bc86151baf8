"""Extractive question answering: tiny QA models of every architecture, exported and answered against transformers'
`question-answering` pipeline (transformers 4.57, in a venv of its own: version 5 removed the pipeline) on
contexts shorter and much longer than the window, with and without the empty answer."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from families import write_family_checkpoint

from mbert_edge import QuestionAnswerer, WindowError
from mbert_edge.textdata import builtin_sample

pytestmark = pytest.mark.slow  # a fresh venv with transformers 4.57, and an export per architecture

REFERENCE = ("transformers==4.57.6", "tokenizers==0.22.2", "huggingface-hub==0.36.2")
SENTENCES = [s for group in builtin_sample().texts.values() for s in group]
WORDY = "Wer kommt morgen aus Hamburg zu Besuch, und warum kommt sie mit dem Zug und nicht mit dem Auto?"
LONG = " ".join(SENTENCES[:40])  # about ten windows of the tiny models' 128 tokens
CASES = [
    ("Wer kommt morgen?", "Meine Schwester kommt morgen aus Hamburg zu Besuch."),
    ("What is the weather like?", SENTENCES[0] + " " + SENTENCES[1]),
    ("Где находится музей?", LONG),
    ("東京はどこ?", "Zürich 🙂 und 東京 " + LONG[:900]),
]
OPTIONS = [{}, {"top_k": 3}, {"handle_impossible_answer": True}, {"max_answer_len": 4, "doc_stride": 32}]
ROBERTA_SPECIALS = {"cls": "<s>", "sep": "</s>", "pad": "<pad>", "unk": "<unk>", "mask": "<mask>"}


@pytest.fixture(scope="session")
def reference_python(tmp_path_factory) -> Path:
    """A venv holding transformers 4.57 and the tokenizers it takes, seeing this environment's torch through a
    .pth file placed after its own packages (so its transformers shadows ours)."""
    venv = tmp_path_factory.mktemp("transformers-4.57") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", *REFERENCE], check=True, timeout=600)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "mbert_edge_parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return python


def pipeline_answers(python: Path, models: list[tuple[Path, int, str, list]]) -> list[list]:
    """The pipeline's results for each (checkpoint, max_seq_len, model type, cases), one process for all."""
    request = {
        "models": [
            {
                "checkpoint": str(checkpoint),
                "max_seq_len": max_seq_len,
                "special_tokens": ROBERTA_SPECIALS if model_type == "roberta" else {},
                **({"model_input_names": ["input_ids", "attention_mask"]} if model_type == "xlm-roberta" else {}),
                "cases": [{"question": q, "context": c, "options": o} for q, c, o in cases],
            }
            for checkpoint, max_seq_len, model_type, cases in models
        ]
    }
    script = Path(__file__).with_name("qa_reference.py")
    done = subprocess.run(
        [str(python), str(script)], input=json.dumps(request), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reply = json.loads(done.stdout)
    assert reply["version"].startswith("4.57")
    return reply["results"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, qa_checkpoint, qa_bundle):
    """(checkpoint, bundle) of a tiny QA model per architecture, exported once with `--task auto`
    ("bert-wordpiece": M-BERT's kind, vocab.txt)."""
    from mbert_edge.export import export_bundle

    made: dict[str, tuple[Path, Path]] = {"bert-wordpiece": (qa_checkpoint, qa_bundle)}

    def get(model_type: str) -> tuple[Path, Path]:
        if model_type not in made:
            root = tmp_path_factory.mktemp(f"{model_type}-qa")
            checkpoint = write_family_checkpoint(root / "checkpoint", model_type, "question-answering")
            made[model_type] = checkpoint, export_bundle(str(checkpoint), root / "bundle").path
        return made[model_type]

    return get


def as_list(result) -> list:
    """The pipeline gives a dict where one answer is left, whatever top_k; ours a list for every top_k > 1."""
    return result if isinstance(result, list) else [result]


ARCHITECTURES = ["bert-wordpiece", "bert", "distilbert", "roberta", "xlm-roberta"]
PIPELINE_CASES = [(q, c, o) for q, c in CASES for o in OPTIONS]


@pytest.fixture(scope="module")
def pipeline_results(exported, reference_python) -> dict[str, list]:
    """The pipeline's results on every architecture's checkpoint, by model type."""
    models = []
    for model_type in ARCHITECTURES:
        checkpoint, bundle = exported(model_type)
        max_seq_len = QuestionAnswerer(bundle, precision="fp32").max_length
        models.append((checkpoint, max_seq_len, model_type, PIPELINE_CASES))
    return dict(zip(ARCHITECTURES, pipeline_answers(reference_python, models)))


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_answers_agree_with_the_pipeline(exported, pipeline_results, model_type):
    _, bundle = exported(model_type)
    model = QuestionAnswerer(bundle, precision="fp32")
    cases, theirs = PIPELINE_CASES, pipeline_results[model_type]
    assert len(theirs) == len(cases)
    assert len(model.runner.pair_windows([CASES[2][:2]], "window", 64)[0]) >= 5  # the long context: many windows
    for (question, context, options), reference in zip(cases, theirs):
        ours = model.answer(question, context, **options)
        assert isinstance(ours, list) == (options.get("top_k", 1) > 1)
        mine, expected = as_list(ours), as_list(reference)
        assert [(a["answer"], a["start"], a["end"]) for a in mine] == [
            (a["answer"], a["start"], a["end"]) for a in expected
        ], (question, options)
        assert [a["score"] for a in mine] == pytest.approx([a["score"] for a in expected], abs=1e-5)
        assert all(context[a["start"] : a["end"]] == a["answer"] for a in mine)
    # Many questions at once, batched through the runner, equal one at a time (FP32: to float rounding).
    questions, contexts = zip(*CASES)
    together = model.answer(list(questions), list(contexts), top_k=2)
    alone = [model.answer(q, c, top_k=2) for q, c in CASES]
    assert [[(a["answer"], a["start"], a["end"]) for a in r] for r in together] == [
        [(a["answer"], a["start"], a["end"]) for a in r] for r in alone
    ]
    assert [a["score"] for r in together for a in r] == pytest.approx([a["score"] for r in alone for a in r], rel=1e-5)


def test_question_answering_inputs(exported):
    _, bundle = exported("bert-wordpiece")
    model = QuestionAnswerer(bundle, precision="fp32")
    context = SENTENCES[3]
    one = model.answer("Wo?", context)
    assert set(one) == {"score", "start", "end", "answer"} and 0 < one["score"] <= 1
    assert model.predict(("Wo?", context)) == one == model.predict({"text": "Wo?", "text_pair": context})
    assert model.answer(["Wo?", "Wann?"], context) == model.predict([("Wo?", context), ("Wann?", context)])
    long_question = "Wo " * 200 + "?"
    cut = model.answer(long_question, context, max_question_len=8)  # room left for the context
    head = long_question[: model.tokenizer.encode(long_question, add_special_tokens=False).offsets[7][1]]
    assert cut == model.answer(head, context) != model.answer(long_question[: len(head) + 3], context)
    with pytest.raises(TypeError, match="pairs, not texts alone"):
        model.predict(context)
    with pytest.raises(ValueError, match="2 questions for 3 contexts"):
        model.answer(["a", "b"], ["x", "y", "z"])
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        model.answer("Wo?", context, top_k=0)
    with pytest.raises(ValueError, match="truncation must be 'window'"):
        model.predict(("Wo?", context), truncation="head")
    impossible = model.answer("Wo?", context, handle_impossible_answer=True, top_k=50)
    empty = [a for a in impossible if a["answer"] == ""]
    assert len(empty) == 1 and empty[0]["start"] == empty[0]["end"] == 0 and 0 < empty[0]["score"] < 1
    assert all(a["answer"] for a in model.answer("Wo?", context, top_k=50))


def test_the_graph_outputs_start_and_end_logits(exported):
    """The exported graph's one output is the PyTorch model's start and end logits, stacked per token."""
    import torch
    import transformers

    checkpoint, bundle = exported("bert-wordpiece")
    model = QuestionAnswerer(bundle, precision="fp32")
    windows = model.runner.pair_windows([("Wer?", SENTENCES[5])], "window")[0]
    (outputs,) = model.runner.run(windows)
    torch_model = transformers.BertForQuestionAnswering.from_pretrained(checkpoint, attn_implementation="eager")
    with torch.inference_mode():
        expected = torch_model(
            input_ids=torch.tensor([windows[0].ids]),
            attention_mask=torch.tensor([windows[0].attention_mask]),
            token_type_ids=torch.tensor([windows[0].type_ids]),
        )
    both = np.stack([expected.start_logits[0].numpy(), expected.end_logits[0].numpy()], axis=-1)
    assert outputs.shape == both.shape and np.abs(outputs - both).max() < 1e-4


def test_quantized_answers_and_the_gate(exported, tmp_path):
    """Both INT8 methods are gated on the built-in questions per language (exact match with FP32's answers, and
    their token F1); faithful INT8 answers batched exactly as one at a time."""
    import shutil

    import onnx
    from conftest import run_cli

    from mbert_edge.bundle import Bundle
    from mbert_edge.quantization import QuantizationConfig
    from mbert_edge.quantize.pipeline import quantize_bundle
    from mbert_edge.runtime.accuracy import compare, gate_failure

    _, bundle = exported("bert")
    faithful = Path(shutil.copytree(bundle, tmp_path / "faithful"))
    report = quantize_bundle(faithful, QuantizationConfig.of("faithful", min_agreement=0.0))
    langs = set(builtin_sample(questions=True).texts)
    assert set(report["groups"]) == langs and report["overall"]["decisions"] == 60
    assert 0 <= report["overall"]["answer_f1"] <= 1 and report["overall"]["agreement"] <= report["overall"]["answer_f1"]
    assert Bundle.open(faithful).manifest.labels is None
    int8 = QuestionAnswerer(faithful, precision="int8")
    questions, contexts = zip(*CASES)
    together = int8.answer(list(questions), list(contexts), top_k=2)
    assert together == [int8.answer(q, c, top_k=2) for q, c in CASES]  # exactly
    dynamic = Path(shutil.copytree(bundle, tmp_path / "dynamic"))
    quantized = run_cli("quantize", str(dynamic), "--method", "dynamic", "--min-agreement", "0")
    assert quantized.returncode == 0 and "answer F1" in quantized.stdout and "exact match" in quantized.stdout
    # The gate judges answers: a graph whose logits are negated answers other spans, and fails it.
    graph = onnx.load(str(Path(bundle) / "model.onnx"))
    output = graph.graph.output[0].name
    for node in graph.graph.node:
        node.output[:] = [f"{name}_raw" if name == output else name for name in node.output]
    graph.graph.node.append(onnx.helper.make_node("Neg", [f"{output}_raw"], [output]))
    fp32 = QuestionAnswerer(bundle, precision="fp32").runner
    negated = compare(
        "question-answering",
        fp32,
        fp32.with_graph(graph.SerializeToString(), "negated"),
        builtin_sample(questions=True),
    )
    assert negated["overall"]["agreement"] < 0.5 and negated["overall"]["answer_f1"] < 0.7
    assert "overall agreement" in (gate_failure(negated, 0.9, 0.99) or "")
    assert gate_failure(report, 0.0, 0.99) is None


def test_windows_of_a_context_beside_its_question(exported):
    """`max_windows` bounds the windows a context is read in beside its question: a window holds what the question
    leaves and moves by what `doc_stride` leaves, not a text's own room and step. The check agrees with the
    windows built at every length, including contexts that would fit as texts alone. A question that leaves the
    context no more than `doc_stride` tokens is a one-line ValueError (the tokenizer would panic). Either is its
    row's error in batch, where the other rows are answered."""
    import pyarrow as pa

    from mbert_edge.batch.results import annotate

    _, bundle = exported("bert-wordpiece")
    whole = QuestionAnswerer(bundle, precision="fp32")
    limited = QuestionAnswerer(bundle, precision="fp32", max_windows=3)
    question, words = "Wer kommt morgen?", LONG.split()
    judged = []
    for count in range(10, 260, 10):
        context = " ".join(words[:count])
        windows = len(whole.runner.pair_windows([(question, context)], "window", whole.doc_stride())[0])
        error = limited.window_error((question, context))
        assert (error is not None) == (windows > 3), (count, windows, error)
        judged.append((windows > 3, limited.runner.window_error(context) is not None))
        if windows > 3:
            assert str(error) == "second text is longer than 3 windows of 128 tokens (the max_windows limit)"
            assert not error.no_room
            with pytest.raises(ValueError, match=r"^pair 0's second text is longer than 3 windows of 128 tokens"):
                limited.answer(question, context)
        else:
            assert limited.answer(question, context) == whole.answer(question, context)
    assert (False, False) in judged and (True, True) in judged
    assert (True, False) in judged  # too many windows beside the question, few enough alone

    short, long = " ".join(words[:20]), " ".join(words[:250])
    room = 128 - 3 - 64  # the question cut to max_question_len (64 tokens), and [CLS] [SEP] [SEP]
    leaves = (
        f"first text leaves {room} of 128 tokens to the second, not more than the 64 consecutive windows share; "
        "shorten the first text or lower the stride"
    )
    no_room = limited.window_error((WORDY, short))
    assert no_room is not None and no_room.no_room and str(no_room) == leaves
    assert limited.window_error(("Wo\ud800?", short)) is None
    with pytest.raises(WindowError, match=rf"^pair 0's {leaves}$") as raised:
        whole.answer(WORDY, short)
    assert raised.value.no_room
    for fixed in (whole.answer(WORDY, short, doc_stride=32), whole.answer(WORDY, short, max_question_len=32)):
        assert fixed["answer"] == short[fixed["start"] : fixed["end"]] != ""
    assert whole.answer("\ud800 " * 100, short)["answer"] == whole.answer("\ufffd " * 100, short)["answer"]  # cut alike
    assert whole.answer(question, short, max_answer_len=10**20) == whole.answer(question, short, max_answer_len=512)
    for wrong, name in (((None, short), "question"), ((b"Wo?", short), "question"), ((question, None), "context")):
        with pytest.raises(TypeError, match=f"^{name} must be a str or a sequence of str, got "):
            whole.answer(*wrong)

    table = pa.table({"q": [question, WORDY, question], "text": [long, short, short]})
    rows = annotate(limited, table, "text", query_column="q").to_pylist()
    assert [row["error"] for row in rows] == [
        "second text is longer than 3 windows of 128 tokens (the max_windows limit); split the context",
        leaves,
        None,
    ]
    assert [row["answer"] for row in rows] == [None, None, limited.answer(question, short)["answer"]]


def test_answers_on_the_command_line_the_server_and_in_batch(exported, tmp_path):
    """`predict --question`, `/answer` (and `/predict` with pairs) and `batch --question-column` answer as
    `QuestionAnswerer.answer`; what does not fit is a one-line error, a 422, or its row's error."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from conftest import quick_bench, run_cli
    from starlette.testclient import TestClient

    from mbert_edge import load
    from mbert_edge.serve.app import create_app
    from mbert_edge.serve.settings import ServerSettings

    _, bundle = exported("bert-wordpiece")
    model = load(bundle)
    assert isinstance(model, QuestionAnswerer)
    question, contexts = "Wer kommt morgen?", [CASES[0][1], CASES[2][1]]

    printed = run_cli("predict", str(bundle), *contexts, "--question", question, "--top-k", "2", "--doc-stride", "32")
    assert printed.returncode == 0, printed.stderr
    assert [json.loads(line) for line in printed.stdout.splitlines()] == json.loads(
        json.dumps(model.answer(question, contexts, top_k=2, doc_stride=32))
    )
    tsv = run_cli(
        "predict", str(bundle), "--input", "-", "--pair-separator", r"\t", stdin=f"{question}\t{contexts[0]}\n"
    )
    assert tsv.returncode == 0 and json.loads(tsv.stdout) == json.loads(json.dumps(model.answer(question, contexts[0])))
    refused = run_cli("predict", str(bundle), contexts[0])
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1 and "give --question" in refused.stderr

    with TestClient(create_app(model, ServerSettings(bundle=str(bundle)))) as client:
        one = client.post("/answer", json={"question": question, "context": contexts[0]}).json()
        assert one == json.loads(json.dumps(model.answer(question, contexts[0])))
        many = client.post("/answer", json={"question": [question, "Wo?"], "context": contexts, "top_k": 2}).json()
        assert many == json.loads(json.dumps(model.answer([question, "Wo?"], contexts, top_k=2)))
        pairs = client.post("/predict", json={"inputs": [[question, contexts[0]]]}).json()
        assert pairs == [one]
        for body, error in (
            ({"context": contexts[0]}, "question is missing"),
            ({"question": ["a", "b", "c"], "context": contexts}, "3 questions for 2 contexts"),
            ({"question": question, "context": contexts[0], "top_k": 0}, "top_k must be >= 1"),
            ({"question": question, "context": contexts[0], "handle_impossible_answer": "yes"}, "must be bool"),
            ({"question": question, "context": contexts[0], "doc_stride": 126}, "doc_stride must be an int from 0 to"),
            ({"question": question, "context": contexts[0], "doc_stride": -1}, "doc_stride must be an int from 0 to"),
            ({"question": WORDY, "context": contexts[0]}, "first text leaves 61 of 128 tokens to the second"),
            ({"question": question, "context": contexts[0], "max_question_len": 0}, "max_question_len must be >= 1"),
        ):
            wrong = client.post("/answer", json=body)
            assert wrong.status_code == 422 and error in wrong.json()["error"], wrong.json()
        assert "/answer" in client.get("/openapi.json").json()["paths"]

    rows = pa.table({"id": range(4), "q": [question, "Wo?", None, question], "text": [*contexts, "x", None]})
    pq.write_table(rows, tmp_path / "in.parquet")
    run = run_cli("batch", str(bundle), str(tmp_path / "in.parquet"), str(tmp_path / "out"), "--question-column", "q")
    assert run.returncode == 0, run.stderr
    out = pq.read_table(tmp_path / "out").to_pylist()
    assert [row["error"] for row in out] == [None, None, "null text in q", "null text"]
    for row, q, c in zip(out, (question, "Wo?"), contexts):
        expected = model.answer(q, c)
        assert (row["answer"], row["start"], row["end"]) == (expected["answer"], expected["start"], expected["end"])
        assert row["score"] == pytest.approx(expected["score"], rel=1e-6)
    options = {"top_k": 2, "max_answer_len": 4, "doc_stride": 32, "handle_impossible_answer": True}
    tuned = run_cli(
        "batch", str(bundle), str(tmp_path / "in.parquet"), str(tmp_path / "tuned"), "--question-column", "q",
        "--top-k", "2", "--max-answer-len", "4", "--doc-stride", "32", "--handle-impossible-answer",
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    for row, q, c in zip(pq.read_table(tmp_path / "tuned").to_pylist(), (question, "Wo?"), contexts):
        expected = model.answer(q, c, **options)
        assert (row["answer"], row["start"], row["end"]) == tuple(
            [a[k] for a in expected] for k in ("answer", "start", "end")
        )
        assert row["score"] == pytest.approx([a["score"] for a in expected], rel=1e-6)
    missing = run_cli("batch", str(bundle), str(tmp_path / "in.parquet"), str(tmp_path / "out2"))
    assert missing.returncode != 0 and "--question-column" in missing.stderr
    measured = quick_bench(bundle, "16", "8", "--no-cold-start", "--no-threads")  # on the built-in questions
    assert measured.returncode == 0 and "sentences/s" in measured.stdout, measured.stderr
    (tmp_path / "plain.txt").write_text("Eine Zeile.\n", encoding="utf-8")
    refused = run_cli("bench", str(bundle), "--data", str(tmp_path / "plain.txt"), "--no-cold-start")
    assert refused.returncode != 0 and "question<TAB>context" in refused.stderr


def test_a_span_head_has_two_outputs(tmp_path, vocab):
    from conftest import write_checkpoint

    from mbert_edge.errors import ExportError
    from mbert_edge.export import export_bundle

    checkpoint = write_checkpoint(tmp_path / "checkpoint", "BertForQuestionAnswering", vocab, num_labels=3)
    with pytest.raises(ExportError, match="question-answering head has 3 outputs, not 2"):
        export_bundle(str(checkpoint), tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
