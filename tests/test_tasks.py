"""The task registry is the one owner of what differs between tasks: every part reads its entry."""

from __future__ import annotations

import pytest

from mbert_edge.runtime import TaskModel
from mbert_edge.tasks import TASKS, serving, taking


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
    from mbert_edge.batch.results import COLUMNS, output_columns
    from mbert_edge.cli.tooling import export
    from mbert_edge.serve.openapi import openapi

    assert set(COLUMNS) == set(TASKS)
    for name, task in TASKS.items():
        assert output_columns(name) == (*task.result_columns, "error")
        inference = {path for path, item in openapi(name, 8)["paths"].items() if "post" in item} - {"/tokenize"}
        assert inference == set(task.routes)
    task_option = next(p for p in export.params if p.name == "task")
    assert list(task_option.type.choices) == ["auto", *TASKS]


def test_export_knows_a_head_for_every_task_and_architecture():
    pytest.importorskip("torch")
    from mbert_edge.export.tasks import ARCHITECTURES

    assert all(set(spec.heads) == set(TASKS) for spec in ARCHITECTURES.values())


def test_options_and_routes_name_their_tasks():
    assert taking("top_k") == ["sequence-classification"] and taking("aggregation") == ["token-classification"]
    assert serving("/predict") == ["sequence-classification", "token-classification"]
    assert serving("/embed") == serving("/v1/embeddings") == ["feature-extraction"]
    assert [task.gate_option for task in TASKS.values()] == ["--min-agreement", "--min-agreement", "--min-cosine"]
