"""What each architecture exports for each task (`mbert_edge.tasks`), described as data (after Optimum's exporter configs, much
smaller): adding an architecture is one `Architecture` entry plus its tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mbert_edge.tasks import TASKS


@dataclass(frozen=True)
class Architecture:
    """One transformers `model_type`: the class carrying each task's head (feature extraction is the bare
    model, pooled as its sentence-transformers folder says), whether it takes `token_type_ids`, where its
    position ids start, and its fusion contract.

    `positions_after_padding`: RoBERTa-family models number real tokens from `pad_token_id + 1` (padding
    keeps the padding index), so they hold `max_position_embeddings - pad_token_id - 1` tokens.
    `fused_per_layer` / `fused_once`: the operators ONNX Runtime's BERT optimizer (plus our embedding pass,
    position_embedding.py) must produce per encoder layer and once (fusion.py); all four architectures here
    fuse alike."""

    model_type: str
    prefix: str  # of its transformers classes: "Bert" + a task's head ("ForSequenceClassification")
    token_types: bool = True
    positions_after_padding: bool = False
    fused_per_layer: dict[str, int] = field(
        default_factory=lambda: {"Attention": 1, "SkipLayerNormalization": 2, "Gelu": 1}
    )
    fused_once: dict[str, int] = field(default_factory=lambda: {"EmbedLayerNormalization": 1})
    mask_head: tuple[str, ...] = ("cls",)  # the masked-LM head's modules, applied in turn to the mask tokens' rows

    @property
    def heads(self) -> dict[str, str]:
        """The transformers class that carries each task's head."""
        return {task.name: self.prefix + task.head for task in TASKS.values()}

    def fusion_contract(self, layers: int, task: str | None = None) -> dict[str, int]:
        """The fused operator counts an L-layer model of this architecture must reach (with `task`'s head)."""
        contract = {**{op: n * layers for op, n in self.fused_per_layer.items()}, **self.fused_once}
        for op, n in HEAD_FUSION.get(task or "", {}).items():
            contract[op] = contract.get(op, 0) + n
        return contract

    def inputs(self, config: Any) -> list[str]:
        """The graph's inputs: `token_type_ids` only for models that take them and have more than one type."""
        names = ["input_ids", "attention_mask"]
        takes_types = self.token_types and getattr(config, "type_vocab_size", 0) > 1
        return [*names, "token_type_ids"] if takes_types else names

    def max_positions(self, config: Any) -> int:
        """How many tokens the position embeddings hold."""
        if self.positions_after_padding:
            return config.max_position_embeddings - config.pad_token_id - 1
        return config.max_position_embeddings


# What a task's head adds to the fusion contract: the masked-LM head's transform has a Gelu of its own.
HEAD_FUSION = {"fill-mask": {"Gelu": 1}}

ARCHITECTURES: dict[str, Architecture] = {
    spec.model_type: spec
    for spec in (
        Architecture("bert", "Bert"),
        Architecture(
            "distilbert",
            "DistilBert",
            token_types=False,
            mask_head=("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector"),
        ),
        Architecture("roberta", "Roberta", positions_after_padding=True, mask_head=("lm_head",)),
        Architecture("xlm-roberta", "XLMRoberta", positions_after_padding=True, mask_head=("lm_head",)),
    )
}

# `--task auto`: the checkpoint's `architectures` entry decides.
ARCHITECTURE_TASKS = {head: task for spec in ARCHITECTURES.values() for task, head in spec.heads.items()}

INPUT_AXES = {0: "batch", 1: "sequence"}
POOLING_MODES = ("mean", "cls", "max")
