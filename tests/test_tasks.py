"""The task registry is the one owner of what differs between tasks: every part reads its entry."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mbert_edge import Classifier, load
from mbert_edge.runtime import TaskModel
from mbert_edge.tasks import TASKS, Column, Option, serving, taking


def test_each_entry_names_its_runtime_class_and_the_class_names_its_entry():
    for name, task in TASKS.items():
        cls = task.model_class()
        assert issubclass(cls, TaskModel) and cls.task == name


def test_predict_is_abstract():
    class NoPredict(TaskModel):
        task = "sequence-classification"

    with pytest.raises(TypeError, match="abstract"):
        NoPredict("unused")


def test_batch_serve_export_and_the_cli_cover_every_task():
    pytest.importorskip("pyarrow")
    from mbert_edge.batch.results import output_columns
    from mbert_edge.cli.inference import predict
    from mbert_edge.cli.tooling import export
    from mbert_edge.serve.openapi import openapi

    for name, task in TASKS.items():
        assert output_columns(name) == (*(c.name for c in task.columns), "error")
        inference = {path for path, item in openapi(name, 8)["paths"].items() if "post" in item} - {"/tokenize"}
        assert inference == set(task.routes)
    task_option = next(p for p in export.params if p.name == "task")
    assert list(task_option.type.choices) == ["auto", *TASKS]
    every = {name for task in TASKS.values() for name in task.predict_options}
    answering = {"max_answer_len", "doc_stride", "max_question_len", "handle_impossible_answer"}
    assert every == {"top_k", "aggregation", "normalize", "targets", *answering}
    assert every <= {p.name for p in predict.params}


def test_export_knows_a_head_for_every_task_and_architecture():
    pytest.importorskip("torch")
    from mbert_edge.export.tasks import ARCHITECTURES

    assert all(set(spec.heads) == set(TASKS) for spec in ARCHITECTURES.values())


def test_options_and_routes_name_their_tasks():
    assert taking("top_k") == ["sequence-classification", "fill-mask", "question-answering"]
    assert taking("aggregation") == ["token-classification"]
    assert serving("/predict") == ["sequence-classification", "token-classification", "fill-mask", "question-answering"]
    assert serving("/answer") == ["question-answering"] and taking("doc_stride") == ["question-answering"]
    assert serving("/embed") == serving("/v1/embeddings") == ["feature-extraction"]
    assert serving("/fill-mask") == ["fill-mask"] and taking("targets") == ["fill-mask"]
    gates = [task.gate_option for task in TASKS.values()]
    assert gates == ["--min-agreement", "--min-agreement", "--min-cosine", "--min-agreement", "--min-agreement"]


class Margin(Classifier):
    """A task the registry does not have: the best label and its lead over the runner-up, or no label when the
    lead is under `min_margin`. Built on a classification bundle's graph."""

    task = "label-margin"

    def predict(self, texts, batch_size=32, truncation=None, min_margin=0.0):  # type: ignore[override]
        if not 0 <= min_margin <= 1:
            raise ValueError(f"min_margin must be in [0, 1], got {min_margin}")
        rows = np.atleast_2d(self.predict_proba(texts, batch_size, truncation))
        results = []
        for row in rows:
            first, second = np.sort(row)[::-1][:2]
            label = self.labels[int(np.argmax(row))] if first - second >= min_margin else None
            results.append({"label": label, "margin": float(first - second)})
        return results[0] if isinstance(texts, str) else results


LABEL_MARGIN = dataclasses.replace(
    TASKS["sequence-classification"],  # the same graph, head and gate
    name="label-margin",
    runtime_class="test_tasks:Margin",
    predict_options={"min_margin": Option((float,), description="least lead of the best label (default 0)")},
    result={"type": "object", "properties": {"label": {"type": ["string", "null"]}, "margin": {"type": "number"}}},
    summary="the best label and its lead",
    columns=(Column("label", "string", "label"), Column("margin", "float32", "margin")),
    routes=("/predict", "/margin"),
    pairs=False,
)


def test_a_new_task_is_its_runtime_class_plus_one_registry_entry(seqcls_bundle, tmp_path, monkeypatch):
    """With only `Margin` and its entry, the bundle loads as the task, `batch` writes its columns and the server
    answers its routes with its options, published in its OpenAPI document."""
    pa = pytest.importorskip("pyarrow")
    from starlette.testclient import TestClient

    from mbert_edge.batch.results import annotate
    from mbert_edge.serve.app import ServerSettings, create_app

    monkeypatch.setitem(TASKS, LABEL_MARGIN.name, LABEL_MARGIN)
    bundle = Path(shutil.copytree(seqcls_bundle, tmp_path / "margin"))
    manifest = json.loads((bundle / "mbert_edge.json").read_text())
    (bundle / "mbert_edge.json").write_text(json.dumps({**manifest, "task": LABEL_MARGIN.name}))
    model = load(bundle, precision="fp32")
    assert isinstance(model, Margin)
    texts = ["Guten Morgen.", "Das ist schlecht.", ""]
    expected = model.predict(texts[:2])

    table = annotate(model, pa.table({"text": texts}), "text")
    assert table.column_names == ["text", "label", "margin", "error"]
    assert table.column("label").to_pylist() == [r["label"] for r in expected] + [None]
    assert table.column("margin").to_pylist()[:2] == pytest.approx([r["margin"] for r in expected], abs=1e-6)
    assert table.column("error").to_pylist() == [None, None, "empty text"]

    with TestClient(create_app(model, ServerSettings(bundle=str(bundle)))) as client:
        assert client.post("/margin", json={"inputs": texts[0]}).json() == pytest.approx(expected[0])
        answered = client.post("/predict", json={"inputs": texts[:2], "min_margin": 1.0}).json()
        assert [r["label"] for r in answered] == [None, None]
        refused = client.post("/margin", json={"inputs": "x", "min_margin": "high"})
        assert refused.status_code == 422 and refused.json()["error"] == "min_margin must be float, got string"
        assert client.post("/margin", json={"inputs": "x", "min_margin": 2.0}).status_code == 422  # the runtime's
        assert client.post("/embed", json={"inputs": "x"}).status_code == 400  # another task's route
        published = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/margin"} <= set(published) and "/embed" not in published
    body = published["/margin"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"inputs", "min_margin", "truncation"}
