"""Fuse RoBERTa-family embeddings into one EmbedLayerNormalization fed the graph's own position ids.

RoBERTa and XLM-R number real tokens from the padding index + 1 (computed in the graph from `input_ids`:
Equal, Not, CumSum, ...). ONNX Runtime's BERT optimizer has that pattern switched off (its RoBERTa matcher
is commented out in `fusion_embedlayer.py`), so the word, position and token-type Gathers, their Adds and
the LayerNormalization stay separate. Its CPU `EmbedLayerNormalization` does take explicit position ids
(input 8), so this pass builds the fused node around the position ids the graph already computes: the
result is exact, padded batches included. A one-row token-type table (RoBERTa's `type_vocab_size` 1) adds
the same row to every token, so it is folded into the position table.
"""

from __future__ import annotations

from typing import Any

from onnx import TensorProto, helper, numpy_helper


def _summed_gathers(model: Any, tensor: str, producers: dict) -> list | None:
    """The Gather nodes (on initializer tables) whose Add tree makes `tensor`, or None if anything else does."""
    node = producers.get(tensor)
    if node is None:
        return None
    if node.op_type == "Gather":
        return [node] if model.get_initializer(node.input[0]) is not None else None
    if node.op_type != "Add":
        return None
    found = []
    for operand in node.input:
        part = _summed_gathers(model, operand, producers)
        if part is None:
            return None
        found += part
    return found


def _int32(model: Any, tensor: str, name: str) -> str:
    cast = helper.make_node("Cast", [tensor], [f"{name}_int32"], name=f"{name}_cast", to=TensorProto.INT32)
    model.add_node(cast)
    return cast.output[0]


def fuse_position_embeddings(model: Any) -> bool:
    """Rewrite `model` (an `onnxruntime.transformers` OnnxModel) in place: a LayerNormalization over the sum of
    the word Gather (indexed by `input_ids`), a position Gather and optional token-type Gathers becomes one
    EmbedLayerNormalization. Returns whether it found one."""
    producers = model.output_name_to_node()
    for norm in model.get_nodes_by_op_type("LayerNormalization"):
        gathers = _summed_gathers(model, norm.input[0], producers)
        if not gathers:
            continue
        words = [g for g in gathers if g.input[1] == "input_ids"]
        segments = [g for g in gathers if g.input[1] == "token_type_ids"]
        tables = {g.name: numpy_helper.to_array(model.get_initializer(g.input[0])) for g in gathers}
        constant_rows = [g for g in gathers if g not in words + segments and tables[g.name].shape[0] == 1]
        positions = [g for g in gathers if g not in words + segments + constant_rows]
        if len(words) != 1 or len(positions) != 1 or len(segments) > 1:
            continue
        position = positions[0]
        table = tables[position.name] + sum(tables[g.name][0] for g in constant_rows)
        table_name = f"{position.input[0]}_fused"
        model.add_initializer(numpy_helper.from_array(table.astype(tables[position.name].dtype), table_name))
        segment_ids = _int32(model, "token_type_ids", "token_type_ids") if segments else ""
        inputs = [
            _int32(model, "input_ids", "input_ids"),
            segment_ids,
            words[0].input[0],
            table_name,
            segments[0].input[0] if segments else "",
            norm.input[1],
            norm.input[2],
            "",
            _int32(model, position.input[1], "position_ids"),
        ]
        epsilon = next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-5)
        model.add_node(
            helper.make_node(
                "EmbedLayerNormalization",
                inputs,
                [norm.output[0], "embedding_mask_index"],
                name="EmbedLayerNormalization_positions",
                domain="com.microsoft",
                epsilon=epsilon,
            )
        )
        model.remove_node(norm)
        model.prune_graph()
        model.topological_sort()
        return True
    return False
