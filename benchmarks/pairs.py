"""Pairs of texts on one model shape: reranking one query x 100 documents (ms per query) and zero-shot
classification with 5 candidate labels (texts/s), our FP32 and both INT8 methods side by side with PyTorch
(sentence-transformers' `CrossEncoder.rank`, or the transformers model on the same pairs where it is not
installed; transformers' zero-shot-classification pipeline), in alternating rounds, one process, the same threads.

    python benchmarks/mbert_shaped.py --labels score --out ~/.cache/mbert-edge/mbert-rerank
    python benchmarks/mbert_shaped.py --labels contradiction,neutral,entailment --out ~/.cache/mbert-edge/mbert-nli
    python benchmarks/pairs.py ~/.cache/mbert-edge/mbert-rerank ~/.cache/mbert-edge/mbert-nli \\
        --data ../shared/data/tatoeba --work ~/.cache/mbert-edge/pairs [--json FILE]

Documents, the query and the zero-shot texts are sentences of `--data` taken from each group in turn. The
checkpoints are exported and quantized (gate off: random heads) into `--work` once and reused. Besides the
speed, each variant's largest |relevance logit - PyTorch's| over the 100 documents, and whether its top 10 are
PyTorch's.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import click
import numpy as np
from json_output import JSON_OPTION, write_json
from variants import bundles, timing_options

from mbert_edge.bench.measure import machine, side_by_side
from mbert_edge.bench.report import machine_line
from mbert_edge.runtime import Reranker, ZeroShotClassifier
from mbert_edge.textdata import load_textset

LABELS = ["travel", "food", "sport", "politics", "weather"]


def sentences(data: Path, count: int) -> list[str]:
    """`count` sentences of `data`, one from each group in turn."""
    groups = load_textset(data).sentences().values()
    mixed = (s for row in itertools.zip_longest(*groups) for s in row if s is not None)
    return list(itertools.islice(mixed, count))


def pytorch_reranker(checkpoint: Path, threads: int) -> tuple[str, Any]:
    """(name, rank(query, documents) -> logits in the documents' order) of the PyTorch cross-encoder."""
    import torch

    torch.set_num_threads(threads)
    try:
        from sentence_transformers import CrossEncoder
    except ImportError:
        import transformers

        tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()

        def logits(query: str, documents: list[str]) -> np.ndarray:
            with torch.inference_mode():
                batches = [documents[i : i + 32] for i in range(0, len(documents), 32)]
                return np.concatenate(
                    [
                        model(**tokenizer([query] * len(b), b, padding=True, truncation=True, return_tensors="pt"))
                        .logits[:, 0]
                        .numpy()
                        for b in batches
                    ]
                )

        return "transformers model (PyTorch FP32)", logits
    encoder = CrossEncoder(str(checkpoint), device="cpu", activation_fn=torch.nn.Identity())

    def ranked(query: str, documents: list[str]) -> np.ndarray:
        scores = np.zeros(len(documents), np.float32)
        for hit in encoder.rank(query, documents, batch_size=32):
            scores[hit["corpus_id"]] = hit["score"]
        return scores

    return "sentence-transformers CrossEncoder (PyTorch FP32)", ranked


@click.command()
@click.argument("cross_encoder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("nli", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="Sentences (Tatoeba).")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), required=True, help="The bundles' folder.")
@click.option("--documents", default=100, show_default=True, help="Documents per query.")
@click.option("--texts", default=32, show_default=True, help="Zero-shot texts per call.")
@timing_options(rounds=5, per_round=3)
@JSON_OPTION
def main(
    cross_encoder: Path,
    nli: Path,
    data: Path,
    work: Path,
    documents: int,
    texts: int,
    rounds: int,
    per_round: int,
    threads: int,
    json_file: Path | None,
) -> None:
    import transformers

    pool = sentences(data, documents + texts + 1)
    query, docs, zero_shot_texts = pool[0], pool[1 : documents + 1], pool[documents + 1 :]
    rerankers = {
        name: Reranker(bundle, precision=precision, intra_op_threads=threads)
        for name, (bundle, precision) in bundles(cross_encoder, work / "rerank").items()
    }
    torch_name, torch_logits = pytorch_reranker(cross_encoder, threads)
    reference = torch_logits(query, docs)
    top10 = set(np.argsort(-reference, kind="stable")[:10].tolist())
    calls = {name: (lambda r=r: r.rank(query, docs)) for name, r in rerankers.items()}
    calls[torch_name] = lambda: torch_logits(query, docs)
    rerank_ms = side_by_side(calls, rounds, per_round)
    rerank: dict[str, dict[str, Any]] = {}
    for name, ms in rerank_ms.items():
        logits = reference if name == torch_name else rerankers[name].scores(query, docs, raw_scores=True)
        rerank[name] = {
            "ms_per_query": ms,
            "max_abs_logit_diff": float(np.abs(logits - reference).max()),
            "same_top10": set(np.argsort(-logits, kind="stable")[:10].tolist()) == top10,
        }

    classifiers = {
        name: ZeroShotClassifier(bundle, precision=precision, intra_op_threads=threads)
        for name, (bundle, precision) in bundles(nli, work / "nli").items()
    }
    pipe = transformers.pipeline("zero-shot-classification", model=str(nli), device="cpu")
    zero_calls = {name: (lambda c=c: c.predict(zero_shot_texts, LABELS)) for name, c in classifiers.items()}
    zero_calls["transformers zero-shot pipeline (PyTorch FP32)"] = lambda: pipe(zero_shot_texts, LABELS)
    zero_ms = side_by_side(zero_calls, rounds, max(1, per_round // 2))
    zero_shot = {
        name: {"ms_per_call": ms, "texts_per_s": len(zero_shot_texts) / ms * 1e3} for name, ms in zero_ms.items()
    }

    figures = {
        "machine": machine("onnxruntime", "torch", "transformers", "sentence-transformers"),
        "documents": len(docs),
        "zero_shot_texts": len(zero_shot_texts),
        "labels": LABELS,
        "threads": threads,
        "rerank": rerank,
        "zero_shot": zero_shot,
    }
    click.echo(machine_line(figures["machine"]))
    click.echo(f"\nRerank: 1 query x {len(docs)} documents, ms per query (median of {rounds} alternating rounds)\n")
    click.echo("| variant | ms per query | max abs logit diff vs PyTorch | same top 10 |")
    click.echo("|---|---|---|---|")
    for name, row in rerank.items():
        click.echo(f"| {name} | {row['ms_per_query']:.1f} | {row['max_abs_logit_diff']:.3g} | {row['same_top10']} |")
    click.echo(f"\nZero-shot: {len(zero_shot_texts)} texts x {len(LABELS)} labels per call\n")
    click.echo("| variant | ms per call | texts/s |")
    click.echo("|---|---|---|")
    for name, row in zero_shot.items():
        click.echo(f"| {name} | {row['ms_per_call']:.0f} | {row['texts_per_s']:.1f} |")
    write_json(json_file, figures)


if __name__ == "__main__":
    main()
