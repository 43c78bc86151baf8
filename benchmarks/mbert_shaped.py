"""Build the mBERT-shaped stand-in checkpoint: bert-base-multilingual-cased's exact shape with random
weights, a 3-label classification head, and the real mBERT vocabulary from ../shared/data/mbert_vocab.
`--architecture xlm-roberta` builds xlm-roberta-base's shape instead (250,002-row table, positions after
the padding index, no token types) with a SentencePiece Unigram tokenizer trained on the Tatoeba sentences
and filled up with unused pieces to 250,002: right for size and speed, not for tokenization;
`xlm-roberta-large` the same at xlm-roberta-large's shape (24 layers of 1,024; 2.24 GB of FP32 weights, over
protobuf's 2 GiB: the path of models that need external data throughout); `e5-small` intfloat/multilingual-e5-small's
shape (a `BertModel` of 12 layers of 384, a 250,037-row table, XLM-R's tokenizer frame) as an embedder.

    python benchmarks/mbert_shaped.py [--architecture bert|xlm-roberta|xlm-roberta-large|e5-small] [--out DIR] [--labels A,B]

`--labels score` gives a cross-encoder's head (one relevance logit); `--labels contradiction,neutral,entailment` an
NLI head (benchmarks/pairs.py); `--masked-lm` M-BERT's own head, `BertForMaskedLM` with its decoder tied to the word
table (benchmarks/fill_mask.py); `--question-answering` an extractive QA head, `BertForQuestionAnswering`
(benchmarks/question_answering.py).

No multilingual weights can be downloaded here; these models are right for size, speed and tokenizer
behaviour, not for accuracy (use the fine-tuned MiniLM for that).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VOCAB = REPO.parent / "shared" / "data" / "mbert_vocab" / "vocab.txt"
TATOEBA = REPO.parent / "shared" / "data" / "tatoeba"
DEFAULT_OUT = Path.home() / ".cache" / "mbert-edge" / "mbert-shaped"
LABELS = ["negative", "neutral", "positive"]
XLMR_ROWS = 250_002
XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0-3, as in xlm-roberta-base
E5_SMALL_ROWS = 250_037


def unigram_tokenizer_json(rows: int) -> str:
    """A Unigram tokenizer trained on Tatoeba (XLM-R's pre-tokenizer and frame), padded to `rows` pieces with
    unused fillers scored below every real piece."""
    import json as json_

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    lines = [line for path in sorted(TATOEBA.glob("*.txt")) for line in path.read_text(encoding="utf-8").splitlines()]
    tokenizer.train_from_iterator(
        lines, trainers.UnigramTrainer(vocab_size=60_000, special_tokens=XLMR_SPECIALS, unk_token="<unk>")
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    data = json_.loads(tokenizer.to_str())
    vocab = data["model"]["vocab"]
    lowest = min(score for _, score in vocab)
    vocab += [[f"\u2581<unused{i}>", lowest - 1.0] for i in range(rows - len(vocab))]
    return json_.dumps(data, ensure_ascii=False)


@click.command()
@click.option("--vocab", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=DEFAULT_VOCAB)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--labels", default=",".join(LABELS), show_default=True, help="The head's labels, comma-separated.")
@click.option("--masked-lm", is_flag=True, help="BertForMaskedLM (the pretraining head) instead of a classifier.")
@click.option("--question-answering", is_flag=True, help="BertForQuestionAnswering instead of a classifier.")
@click.option(
    "--architecture",
    type=click.Choice(["bert", "xlm-roberta", "xlm-roberta-large", "e5-small"]),
    default="bert",
    show_default=True,
)
def main(
    vocab: Path, out: Path, seed: int, labels: str, masked_lm: bool, question_answering: bool, architecture: str
) -> None:
    import torch
    import transformers

    if (masked_lm or question_answering) and architecture != "bert":
        raise click.UsageError("--masked-lm and --question-answering build the bert architecture only")
    if (out / "config.json").exists():
        click.echo(f"cached: {out}")
        return
    torch.manual_seed(seed)
    names = labels.split(",")
    shape = {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    }
    if not (masked_lm or question_answering or architecture == "e5-small"):  # a classifier's head
        shape.update(
            num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
        )
    if architecture == "xlm-roberta-large":
        shape.update(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    if architecture == "e5-small":
        shape.update(hidden_size=384, intermediate_size=1536)
    out.mkdir(parents=True, exist_ok=True)
    if architecture == "e5-small":  # BERT layers under XLM-R's tokenizer; no head (mean pooling by default)
        config = transformers.BertConfig(
            vocab_size=E5_SMALL_ROWS, max_position_embeddings=512, architectures=["BertModel"], **shape
        )
        (out / "tokenizer.json").write_text(unigram_tokenizer_json(E5_SMALL_ROWS), encoding="utf-8")
        (out / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    elif architecture == "bert":
        head = (
            "BertForMaskedLM"
            if masked_lm
            else "BertForQuestionAnswering"
            if question_answering
            else "BertForSequenceClassification"
        )
        config = transformers.BertConfig(vocab_size=119547, architectures=[head], **shape)
        (out / "vocab.txt").write_bytes(vocab.read_bytes())
        (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 512}))
    else:
        config = transformers.XLMRobertaConfig(
            vocab_size=XLMR_ROWS,
            max_position_embeddings=514,
            type_vocab_size=1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            architectures=["XLMRobertaForSequenceClassification"],
            **shape,
        )
        (out / "tokenizer.json").write_text(unigram_tokenizer_json(XLMR_ROWS), encoding="utf-8")
        (out / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    model = getattr(transformers, config.architectures[0])(config)
    model.save_pretrained(out)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
