"""The bundle's `tokenizer.json`: the checkpoint's fast tokenizer (WordPiece, SentencePiece Unigram or BPE) with
its own padding and truncation cleared (the runtime sets both), or one built from `vocab.txt` with the
checkpoint's normalisation; and its special tokens, read from the checkpoint rather than assumed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from mbert_edge.bundle import SpecialToken
from mbert_edge.errors import ExportError

SPECIAL_DEFAULTS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
# The same roles in SentencePiece/BPE vocabularies (XLM-R, RoBERTa), tried when nothing names them.
SPECIAL_ALTERNATIVES = {"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>"}
ROLES = ("pad", "unk", "cls", "sep")  # every bundle's; "mask" too for fill-mask


def _tokenizer_config(path: Path) -> dict[str, Any]:
    file = path / "tokenizer_config.json"
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}


def _from_vocab(vocab: Path, config: dict[str, Any]) -> Tokenizer:
    """WordPiece from vocab.txt with BertTokenizer's rules and defaults: lower-casing (default on),
    accent stripping (default: follow lower-casing), Chinese character splitting (default on)."""
    lowercase = config.get("do_lower_case", True)
    try:
        built = BertWordPieceTokenizer(
            str(vocab),
            clean_text=True,
            handle_chinese_chars=config.get("tokenize_chinese_chars", True),
            strip_accents=config.get("strip_accents"),
            lowercase=lowercase,
            unk_token=_token(config, "unk"),
            sep_token=_token(config, "sep"),
            cls_token=_token(config, "cls"),
            pad_token=_token(config, "pad"),
            mask_token=_token(config, "mask"),
        )
    except TypeError as exc:  # tokenizers' "cls_token not found in the vocabulary"
        raise ExportError(
            f"{vocab}: {exc}; name the vocabulary's own token in tokenizer_config.json (cls_token, sep_token, ...)"
        ) from exc
    return Tokenizer.from_str(built.to_str())


def _token(config: dict[str, Any], role: str) -> str:
    value = config.get(f"{role}_token") or SPECIAL_DEFAULTS[role]  # null in tokenizer_config.json: not named
    return value["content"] if isinstance(value, dict) else value


def _special_token(tokenizer: Tokenizer, role: str, config: dict[str, Any], model_config: Any) -> str | None:
    """A role's token: as tokenizer_config.json names it; else, for [CLS]/[SEP], what the tokenizer's own
    post-processor puts around a text; for padding, the model config's `pad_token_id`; else the usual names."""
    if config.get(f"{role}_token"):
        return _token(config, role)
    frame = tokenizer.encode("").ids  # the post-processor's frame around an empty text: [CLS] [SEP], <s> </s>
    if role in ("cls", "sep") and len(frame) >= 2:
        return tokenizer.id_to_token(frame[0 if role == "cls" else -1])
    pad_id = getattr(model_config, "pad_token_id", None)
    if role == "pad" and pad_id is not None and tokenizer.id_to_token(pad_id) is not None:
        return tokenizer.id_to_token(pad_id)
    return next(
        (t for t in (SPECIAL_DEFAULTS[role], SPECIAL_ALTERNATIVES[role]) if tokenizer.token_to_id(t) is not None), None
    )


def build_tokenizer(
    path: Path, model_config: Any = None, mask: bool = False
) -> tuple[Tokenizer, dict[str, SpecialToken], int | None]:
    """(tokenizer without padding/truncation, special tokens with ids (the mask token's too, with `mask`), the
    checkpoint's trained length)."""
    config = _tokenizer_config(path)
    if (path / "tokenizer.json").is_file():
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    elif (path / "vocab.txt").is_file():
        tokenizer = _from_vocab(path / "vocab.txt", config)
    else:
        raise ExportError(f"{path} has neither tokenizer.json nor vocab.txt; add the checkpoint's tokenizer files")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    special = {}
    for role in (*ROLES, "mask") if mask else ROLES:
        token = _special_token(tokenizer, role, config, model_config)
        token_id = None if token is None else tokenizer.token_to_id(token)
        if token is None or token_id is None:
            raise ExportError(
                f"the tokenizer in {path} has no {role} token ({token or 'none named in tokenizer_config.json'}"
                f"); name it as {role}_token in tokenizer_config.json"
            )
        special[role] = SpecialToken(token, token_id)
    return tokenizer, special, _trained_length(path, config)


def _trained_length(path: Path, config: dict[str, Any]) -> int | None:
    """The shortest of the tokenizer's `model_max_length` and sentence-transformers' `max_seq_length`."""
    limits = [config.get("model_max_length")]
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        limits.append(json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length"))
    real = [int(x) for x in limits if isinstance(x, (int, float)) and 0 < x < 1e6]
    return min(real) if real else None
