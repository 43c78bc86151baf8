"""Build the mBERT-shaped stand-in checkpoint: bert-base-multilingual-cased's exact shape with random
weights, a 3-label classification head, and the real mBERT vocabulary from ../shared/data/mbert_vocab.

    python benchmarks/mbert_shaped.py [--out ~/.cache/mbert-edge/mbert-shaped]

No multilingual weights can be downloaded here; this model is right for size, speed and tokenizer
behaviour, not for accuracy (use the fine-tuned MiniLM for that).
"""
from __future__ import annotations

import json
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VOCAB = REPO.parent / "shared" / "data" / "mbert_vocab" / "vocab.txt"
DEFAULT_OUT = Path.home() / ".cache" / "mbert-edge" / "mbert-shaped"
LABELS = ["negative", "neutral", "positive"]


@click.command()
@click.option("--vocab", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=DEFAULT_VOCAB)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(vocab: Path, out: Path, seed: int) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    if (out / "config.json").exists():
        click.echo(f"cached: {out}")
        return
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=119547, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, num_labels=3, id2label=dict(enumerate(LABELS)),
                        label2id={l: i for i, l in enumerate(LABELS)}, architectures=["BertForSequenceClassification"])
    model = BertForSequenceClassification(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    (out / "vocab.txt").write_bytes(vocab.read_bytes())
    (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 512}))
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
