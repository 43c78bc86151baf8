"""The tasks a bundle can hold, one registry entry each: what its graph outputs, which options its `predict`
takes, what `batch` adds to each row, which server routes answer it, and how the accuracy gate judges its INT8
model. Standard library only, so every part (export, quantize, the runtime, serve, batch, the CLI) reads the
same entry. Adding a task is its runtime class (`mbert_edge/runtime/`) plus one entry here."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime.model import TaskModel


@dataclass(frozen=True)
class Task:
    """One task: `name` is what the manifest, `export --task` and the server's /info say."""

    name: str
    runtime_class: str  # "module:Class" of its runtime class, imported when first asked for
    output_name: str  # the graph's output
    output_axes: dict[int, str]  # the output's dynamic axes, as the ONNX export names them
    labelled: bool  # results are labels: the gate counts top-1 agreement with FP32; else it takes cosines
    labels_texts: bool  # a label per whole text: --data folders may hold gold labels (<label>.txt)
    pooled: bool  # one vector per text, pooled inside the graph as the checkpoint's sentence-transformers says
    predict_options: tuple[str, ...]  # predict's own options, beyond batch_size and truncation
    result_columns: tuple[str, ...]  # the columns `batch` adds to each row (and "error")
    routes: tuple[str, ...] = field(default=())  # the server's inference routes for it, beyond /tokenize

    @property
    def gate_option(self) -> str:
        """The quantize option that sets this task's gate."""
        return "--min-agreement" if self.labelled else "--min-cosine"

    def model_class(self) -> type[TaskModel]:
        """The runtime class that loads a bundle of this task."""
        module, name = self.runtime_class.split(":")
        cls: type[TaskModel] = getattr(importlib.import_module(module), name)
        return cls


SEQUENCE_CLASSIFICATION = Task(
    "sequence-classification",
    "mbert_edge.runtime.classifier:Classifier",
    "logits",
    {0: "batch"},
    labelled=True,
    labels_texts=True,
    pooled=False,
    predict_options=("top_k",),
    result_columns=("label", "score"),
    routes=("/predict",),
)
TOKEN_CLASSIFICATION = Task(
    "token-classification",
    "mbert_edge.runtime.token_classifier:TokenClassifier",
    "logits",
    {0: "batch", 1: "sequence"},
    labelled=True,
    labels_texts=False,
    pooled=False,
    predict_options=("aggregation",),
    result_columns=("entities",),
    routes=("/predict", "/ner"),
)
FEATURE_EXTRACTION = Task(
    "feature-extraction",
    "mbert_edge.runtime.embedder:Embedder",
    "embeddings",
    {0: "batch"},
    labelled=False,
    labels_texts=False,
    pooled=True,
    predict_options=(),
    result_columns=("embedding",),
    routes=("/embed", "/v1/embeddings"),
)

TASKS: dict[str, Task] = {
    task.name: task for task in (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION, FEATURE_EXTRACTION)
}


def serving(route: str) -> list[str]:
    """The tasks whose servers answer `route`."""
    return [task.name for task in TASKS.values() if route in task.routes]


def taking(option: str) -> list[str]:
    """The tasks whose `predict` takes `option`."""
    return [task.name for task in TASKS.values() if option in task.predict_options]
