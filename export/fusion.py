"""Graph fusion with ONNX Runtime's BERT optimizer, and the fusion contract that proves it happened."""
from __future__ import annotations

from pathlib import Path

from mbert_edge.errors import MbertEdgeError

from .cls_row import keep_cls_row
from .position_embedding import fuse_position_embeddings
from .tasks import ARCHITECTURES


class FusionError(MbertEdgeError):
    """The fused graph lacks operators an L-layer BERT must fuse into."""


GELU_OPS = ("BiasGelu", "FastGelu", "Gelu")
ATTENTION_OPS = ("Attention", "MultiHeadAttention")


def contract_counts(statistics: dict[str, int], nodes: int) -> dict[str, int]:
    """The contract's four kinds, from `BertOnnxModel.get_fused_operator_statistics()`, plus all nodes."""
    return {
        "Attention": sum(statistics.get(o, 0) for o in ATTENTION_OPS),
        "SkipLayerNormalization": statistics.get("SkipLayerNormalization", 0),
        "EmbedLayerNormalization": statistics.get("EmbedLayerNormalization", 0),
        "Gelu": sum(statistics.get(o, 0) for o in GELU_OPS),
        "nodes": nodes,
    }


def contract_gaps(counts: dict[str, int], expected: dict[str, int]) -> list[str]:
    """What the fused graph misses of the architecture's contract (`Architecture.fusion_contract`, e.g. for
    an L-layer BERT: L Attention, 2L SkipLayerNormalization, 1 EmbedLayerNormalization, L Gelu-family nodes).
    Empty when it holds."""
    return [f"{name} {counts.get(name, 0)}/{want}" for name, want in expected.items() if counts.get(name, 0) != want]


def fuse(source: Path, target: Path, num_heads: int, hidden_size: int, layers: int,
         allow_partial: bool = False, cls_row: bool = True,
         contract: dict[str, int] | None = None) -> tuple[dict[str, int], bool]:
    """Fuse `source` into `target`; returns the operator counts and whether the last layer now keeps only the
    [CLS] row (`cls_row`, see cls_row.py), or raises FusionError naming what `contract` (default: BERT's for
    `layers` layers) misses (a warning is left to the caller when `allow_partial`)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    # opt_level 0: only the portable Python fusions; hardware-specific rewrites happen at session load.
    optimized = optimize_model(str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                               optimization_options=FusionOptions("bert"), opt_level=0)
    if not optimized.get_nodes_by_op_type("EmbedLayerNormalization"):
        fuse_position_embeddings(optimized)  # RoBERTa-family embeddings, which ONNX Runtime leaves unfused
    counts = contract_counts(optimized.get_fused_operator_statistics(), len(optimized.model.graph.node))
    gaps = contract_gaps(counts, contract or ARCHITECTURES["bert"].fusion_contract(layers))
    if gaps and not allow_partial:
        raise FusionError(
            f"fusion incomplete for a {layers}-layer encoder (found/expected: {', '.join(gaps)}); the graph runs "
            "but slowly. Export with the default eager attention, or pass --allow-partial-fusion"
        )
    cls_row_only = cls_row and keep_cls_row(optimized.model)
    optimized.save_model_to_file(str(target))
    return counts, cls_row_only
