"""Graph fusion with ONNX Runtime's BERT optimizer, and the fusion contract that proves it happened."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mbert_edge.errors import FusionError

from .cls_row import keep_cls_row
from .position_embedding import fuse_position_embeddings
from .tasks import ARCHITECTURES

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


def fuse(
    source: Path,
    target: Path,
    num_heads: int,
    hidden_size: int,
    layers: int,
    allow_partial: bool = False,
    cls_row: bool = True,
    contract: dict[str, int] | None = None,
) -> tuple[dict[str, int], bool]:
    """Fuse `source` into `target` (in the same folder); returns the operator counts and whether the last layer
    now keeps only the [CLS] row (`cls_row`, see cls_row.py), or raises FusionError naming what `contract`
    (default: BERT's for `layers` layers) misses (a warning is left to the caller when `allow_partial`)."""
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    # Weights in files of their own stay there: ONNX Runtime's fusions copy the whole model into each shape
    # inference (xlm-roberta-large: 2 GiB a copy, 15 GiB peak), and read only the few weights they rewrite.
    model = onnx.load(str(source), load_external_data=False)
    with working_directory(source.parent):  # where those reads look for the weights' files
        # opt_level 0: only the portable Python fusions; hardware-specific rewrites happen at session load.
        optimized = optimize_model(
            model,
            model_type="bert",
            num_heads=num_heads,
            hidden_size=hidden_size,
            optimization_options=FusionOptions("bert"),
            opt_level=0,
        )
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
    # Beside `source`: the weights left in their files are referenced, not copied; new ones go to target.data.
    optimized.save_model_to_file(str(target), use_external_data_format=True)
    return counts, cls_row_only


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run the block in `path` (contextlib.chdir, from Python 3.11)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)
