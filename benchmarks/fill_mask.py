"""Fill-mask on M-BERT's shape with its own head (BertForMaskedLM, decoder tied to the word table): our FP32 and both
INT8 methods beside transformers' fill-mask pipeline (PyTorch), one text at a time and 32 at once; and our graph,
which runs the vocabulary-wide head on the mask tokens' rows alone, beside the same model exported whole (vocabulary
logits at every position, fused alike): ms on the same feeds, and MB on disk. One process, alternating rounds, the
same threads.

    python benchmarks/mbert_shaped.py --masked-lm --out ~/.cache/mbert-edge/mbert-mlm
    python benchmarks/fill_mask.py ~/.cache/mbert-edge/mbert-mlm --data ../shared/data/tatoeba \\
        --work ~/.cache/mbert-edge/fill-mask [--json FILE]

The texts are sentences of `--data` (from each group in turn) with a mask token in place of their middle word.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import click
from json_output import JSON_OPTION, echo_table, write_json
from variants import bundles, timing_options

from mbert_edge.bench.measure import machine, side_by_side
from mbert_edge.bench.report import machine_line
from mbert_edge.bundle import model_bytes
from mbert_edge.runtime import FillMask
from mbert_edge.runtime.batching import padded_inputs
from mbert_edge.runtime.runner import session_options
from mbert_edge.textdata import TextSet, load_textset, with_masks


def full_vocabulary_graph(checkpoint: Path, work: Path) -> Path:
    """The same checkpoint exported as transformers has it (vocabulary logits at every position), fused alike."""
    import torch
    import transformers

    from mbert_edge.export.fusion import fuse

    target = work / "full.onnx"
    if target.exists():
        return target
    model = transformers.AutoModelForMaskedLM.from_pretrained(checkpoint, attn_implementation="eager").eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "logits"]}
    traced = work / "full-traced.onnx"
    with torch.inference_mode():
        torch.onnx.export(
            logits_only(model, names),
            sample,
            str(traced),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    config = model.config
    fuse(  # the contract would want the head's Gelu; partial fusion is allowed, the encoder fuses as ours does
        traced,
        target,
        config.num_attention_heads,
        config.hidden_size,
        config.num_hidden_layers,
        allow_partial=True,
        cls_row=False,
    )
    traced.unlink()
    return target


def logits_only(model: Any, names: list[str]) -> Any:
    """`model` as a module of positional inputs returning its logits tensor."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs))).logits

    return Logits()


def padded_feed(model: FillMask, texts: list[str]) -> dict[str, Any]:
    """One feed of all `texts`, padded to the longest (both graphs run the same batch)."""
    windows = model.runner.first_windows(texts)
    width = max(len(window) for window in windows)
    return padded_inputs(windows, width, model.runner.input_names, model.runner.pad_id)


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="Sentences (Tatoeba).")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), required=True, help="The bundles' folder.")
@click.option("--texts", default=32, show_default=True, help="Texts of the batched call.")
@timing_options(rounds=5, per_round=5)
@JSON_OPTION
def main(
    checkpoint: Path,
    data: Path,
    work: Path,
    texts: int,
    rounds: int,
    per_round: int,
    threads: int,
    json_file: Path | None,
) -> None:
    import onnxruntime as ort
    import torch
    import transformers

    torch.set_num_threads(threads)
    work.mkdir(parents=True, exist_ok=True)
    variants = bundles(checkpoint, work)
    models = {name: FillMask(b, precision=p, intra_op_threads=threads) for name, (b, p) in variants.items()}
    fp32 = models["mbert-edge FP32"]
    groups = load_textset(data).sentences().values()
    mixed = [s for row in itertools.zip_longest(*groups) for s in row if s is not None][:texts]
    batch = [str(text) for text in with_masks(TextSet({"all": list(mixed)}), fp32.mask_token).texts["all"]]
    one = batch[:1]
    pipe = transformers.pipeline("fill-mask", model=str(checkpoint), device="cpu")
    torch_name = "transformers fill-mask pipeline (PyTorch FP32)"

    calls: dict[str, Any] = {f"{name}, 1 text": (lambda m=m: m.predict(one)) for name, m in models.items()}
    calls[f"{torch_name}, 1 text"] = lambda: pipe(one[0])
    calls.update({f"{name}, {len(batch)} texts": (lambda m=m: m.predict(batch)) for name, m in models.items()})
    calls[f"{torch_name}, {len(batch)} texts"] = lambda: pipe(batch, batch_size=32)
    end_to_end = side_by_side(calls, rounds, per_round)

    full = full_vocabulary_graph(checkpoint, work)
    whole = ort.InferenceSession(str(full), session_options(threads), providers=["CPUExecutionProvider"])
    feeds = {size: padded_feed(fp32, texts_) for size, texts_ in (("1 text", one), (f"{len(batch)} texts", batch))}
    graph_calls: dict[str, Any] = {}
    for size, feed in feeds.items():
        graph_calls[f"gathered rows (ours), {size}"] = lambda f=feed: fp32.session.run(None, f)
        graph_calls[f"every position, {size}"] = lambda f=feed: whole.run(None, f)
    graphs = side_by_side(graph_calls, rounds, per_round)
    sizes = {
        "gathered rows (ours)": model_bytes(fp32.bundle.file(fp32.runner.name)) / 1e6,
        "every position": model_bytes(full) / 1e6,
        **{name: model_bytes(m.bundle.file(m.runner.name)) / 1e6 for name, m in models.items() if "INT8" in name},
    }
    reference = pipe(one[0], top_k=5)
    agreement = {
        name: [r["token"] for r in m.predict(one[0])] == [r["token"] for r in reference] for name, m in models.items()
    }

    figures = {
        "machine": machine("onnxruntime", "torch", "transformers"),
        "texts": len(batch),
        "threads": threads,
        "end_to_end_ms": end_to_end,
        "graph_ms": graphs,
        "model_mb": sizes,
        "same_top5_as_pipeline_on_one_text": agreement,
    }
    click.echo(machine_line(figures["machine"]))
    click.echo(f"\nEnd to end (tokenization included), ms per call, median of {rounds} alternating rounds\n")
    echo_table("variant", "ms", end_to_end)
    click.echo("\nThe FP32 graph alone, on the same feeds: the head on the mask tokens' rows or on every position\n")
    echo_table("graph", "ms", graphs)
    click.echo()
    echo_table("model file", "MB", sizes, ".0f")
    write_json(json_file, figures)


if __name__ == "__main__":
    main()
