"""What each task exports, described as data (after Optimum's exporter configs, much smaller)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """One exportable task (one of `mbert_edge.bundle.TASKS`): the transformers class that carries its head,
    and the graph's output."""

    name: str
    head_class: str
    output_name: str
    output_axes: dict[int, str]


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("sequence-classification", "BertForSequenceClassification", "logits", {0: "batch"}),
        TaskSpec("token-classification", "BertForTokenClassification", "logits", {0: "batch", 1: "sequence"}),
        TaskSpec("feature-extraction", "BertModel", "embeddings", {0: "batch"}),
    )
}

# `--task auto`: the checkpoint's `architectures` entry decides.
ARCHITECTURE_TASKS = {spec.head_class: spec.name for spec in TASKS.values()}

SUPPORTED_MODEL_TYPES = ("bert",)
INPUT_AXES = {0: "batch", 1: "sequence"}
POOLING_MODES = ("mean", "cls", "max")
