"""Trace a BERT model with its task head (and, for embeddings, pooling) to ONNX."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from .checkpoint import Checkpoint
from .tasks import INPUT_AXES


class ExportWrapper(torch.nn.Module):
    """The exported function: positional inputs in the architecture's order, one output tensor."""

    def __init__(
        self, model: torch.nn.Module, checkpoint: Checkpoint, input_names: list[str], mask_id: int | None = None
    ) -> None:
        """`mask_id`: for fill-mask, the mask token's id; the head then reads only the rows that hold it."""
        super().__init__()
        self.model = model
        self.pooling = checkpoint.pooling
        self.input_names = input_names
        self.mask_id = mask_id
        self.spans = checkpoint.task.questions
        heads = checkpoint.family.mask_head if mask_id is not None else ()
        self.mask_head: list[torch.nn.Module] = [getattr(model, name) for name in heads]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        kwargs = dict(zip(self.input_names, inputs))
        if self.mask_id is not None:
            # The vocabulary-wide head on the mask tokens' rows alone (row-major order), not on every position.
            encoder: Any = self.model.base_model  # a transformers model's encoder without its head
            rows = encoder(**kwargs).last_hidden_state[kwargs["input_ids"] == self.mask_id]
            for module in self.mask_head:
                rows = module(rows)
            return rows
        output = self.model(**kwargs)
        if self.spans:  # question answering: a (start, end) logit pair per token, one output
            return torch.stack((output.start_logits, output.end_logits), dim=-1)
        if self.pooling is None:
            return output.logits
        hidden = output.last_hidden_state
        mask = kwargs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "max":
            return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
        # Unnormalised: the runtime merges a long text's windows first, then normalises.
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def export_onnx(wrapper: ExportWrapper, checkpoint: Checkpoint, path: Path, opset: int) -> None:
    """TorchScript export (dynamo=False): the graph ONNX Runtime's BERT optimizer fuses fully."""
    spec = checkpoint.task
    sample = tuple(torch.ones((2, 8), dtype=torch.long) for _ in wrapper.input_names)
    if wrapper.mask_id is not None:
        sample[0][:, 3] = wrapper.mask_id  # a mask token in each row: the gather is traced on real rows
    axes = dict.fromkeys(wrapper.input_names, INPUT_AXES)
    axes[spec.output_name] = spec.output_axes
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python control flow in transformers
        torch.onnx.export(
            wrapper,
            sample,
            str(path),
            input_names=wrapper.input_names,
            output_names=[spec.output_name],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
