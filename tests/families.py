"""Tiny random checkpoints of every supported architecture, each with the kind of tokenizer it ships with,
built in the test (no downloads): DistilBERT with WordPiece (vocab.txt), RoBERTa with byte-level BPE and
XLM-R with a SentencePiece Unigram `tokenizer.json`, both trained here on the built-in sample."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import LABELS, NER_LABELS, label_config, randomize_biases, tiny_vocab

# XLM-R's and RoBERTa's special-token layout: <s> 0, <pad> 1, </s> 2, <unk> 3 (<mask> is their last token; here 4).
SENTENCEPIECE_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
HEADS = {
    "sequence-classification": "ForSequenceClassification",
    "token-classification": "ForTokenClassification",
    "feature-extraction": "Model",
    "fill-mask": "ForMaskedLM",
    "question-answering": "ForQuestionAnswering",
}
PREFIX = {"bert": "Bert", "distilbert": "DistilBert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta"}
MAX_POSITIONS = 130  # RoBERTa family: 128 tokens after the padding index + 1


def _training_text() -> list[str]:
    from mbert_edge.textdata import builtin_sample

    return [s for group in builtin_sample().texts.values() for s in group] * 3


def unigram_tokenizer():
    """A SentencePiece Unigram tokenizer as XLM-R's tokenizer.json has it: Metaspace (▁ word starts), <s> $A </s>."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(
        _training_text(),
        trainers.UnigramTrainer(
            vocab_size=600, special_tokens=SENTENCEPIECE_SPECIALS, unk_token="<unk>", show_progress=False
        ),
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return tokenizer


def bpe_tokenizer():
    """A byte-level BPE tokenizer as RoBERTa's tokenizer.json has it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        _training_text(),
        trainers.BpeTrainer(
            vocab_size=700,
            special_tokens=SENTENCEPIECE_SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    return tokenizer


def write_family_checkpoint(folder: Path, model_type: str, task: str, labels: list[str] | None = None) -> Path:
    """A random tiny `model_type` checkpoint with `task`'s head and its tokenizer files. XLM-R's
    tokenizer_config.json names its special tokens (as the real one does); RoBERTa's names none, so they
    are read from the tokenizer's post-processor and the model config. `bert` here is a BERT encoder with
    XLM-R's kind of tokenizer, as paraphrase-multilingual-MiniLM-L12-v2 is (two token types, positions from 0)."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    labels = labels or (NER_LABELS if task == "token-classification" else LABELS)
    head = {} if task in ("feature-extraction", "fill-mask", "question-answering") else label_config(labels)
    if model_type == "distilbert":
        vocab = tiny_vocab()
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}), encoding="utf-8")
        config = transformers.DistilBertConfig(
            vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128, **head
        )
    else:
        tokenizer = bpe_tokenizer() if model_type == "roberta" else unigram_tokenizer()
        tokenizer.save(str(folder / "tokenizer.json"))
        named = (
            {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "cls_token": "<s>",
                "sep_token": "</s>",
                "pad_token": "<pad>",
                "unk_token": "<unk>",
                "mask_token": "<mask>",
            }
            if model_type != "roberta"
            else {}
        )
        (folder / "tokenizer_config.json").write_text(
            json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": MAX_POSITIONS - 2, **named}),
            encoding="utf-8",
        )
        config_class = getattr(transformers, f"{PREFIX[model_type]}Config")
        config = config_class(
            vocab_size=tokenizer.get_vocab_size(),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=MAX_POSITIONS,
            type_vocab_size=2 if model_type == "bert" else 1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            **head,
        )
    torch.manual_seed(0)
    architecture = PREFIX[model_type] + HEADS[task]
    model = getattr(transformers, architecture)(config)
    randomize_biases(model)
    model.config.architectures = [architecture]
    model.save_pretrained(folder)
    if task == "feature-extraction":  # a sentence-transformers folder: mean pooling
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folder
