"""`mbert-edge trim`: drop vocabulary entries an app's languages never produce, with the same outputs.

WordPiece matches the longest vocabulary piece that is a substring of a word; SentencePiece's Unigram picks
the best-scoring split of the text into pieces that are its substrings (with ▁ for spaces). Either way, a
piece made only of characters from the kept scripts (plus Common and Inherited: digits, punctuation,
symbols, combining marks, ▁) is the only kind such text can ever match, so keeping exactly those pieces
(with their scores), the special and unknown pieces and, where the model falls back to bytes, the byte pieces
leaves its tokenization, and so the model's outputs, unchanged. The embedding rows of dropped pieces go from
every ONNX model in the bundle, FP32 and INT8 alike: gathering rows of an already quantized table is exact, so
INT8 outputs stay identical too (re-quantizing would change the per-tensor scale).
"""

from __future__ import annotations

import copy
import json
import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import regex
from onnx import numpy_helper
from tokenizers import Tokenizer

from mbert_edge.bundle import TOKENIZER_NAME, Bundle, Trim
from mbert_edge.errors import TrimError
from mbert_edge.export.staging import staged_folder
from mbert_edge.export.storage import save_model
from mbert_edge.textdata import TextSet

WORD_START = "\u2581"  # SentencePiece's ▁, itself of the Common script
ALWAYS = ("Common", "Inherited")  # digits, punctuation, symbols, combining marks: shared by every script

# Scripts the corpus mode looks for (those mBERT's vocabulary covers); Common/Inherited are always kept.
_SCRIPT_NAMES = (
    "Latin",
    "Cyrillic",
    "Greek",
    "Arabic",
    "Hebrew",
    "Armenian",
    "Georgian",
    "Devanagari",
    "Bengali",
    "Gurmukhi",
    "Gujarati",
    "Oriya",
    "Tamil",
    "Telugu",
    "Kannada",
    "Malayalam",
    "Sinhala",
    "Thai",
    "Lao",
    "Tibetan",
    "Myanmar",
    "Khmer",
    "Hangul",
    "Hiragana",
    "Katakana",
    "Han",
    "Ethiopic",
    "Mongolian",
    "Thaana",
    "Syriac",
)
_SCRIPT_CHARS = {name: regex.compile(rf"\p{{Script={name}}}") for name in _SCRIPT_NAMES}


def script_pattern(scripts: Iterable[str]) -> regex.Pattern:
    """A pattern matching strings made only of characters of `scripts` (Unicode script names, any case)
    or of the Common and Inherited scripts."""
    classes = []
    for name in [*scripts, *ALWAYS]:
        if not name.strip():
            raise TrimError("an empty script name; give names such as latin,cyrillic, with no empty one between commas")
        try:
            classes.append(regex.compile(rf"\p{{Script={name}}}").pattern)
        except regex.error as exc:
            raise TrimError(
                f"unknown Unicode script {name!r}; use names such as latin, cyrillic, greek, arabic, "
                "han, devanagari, hangul"
            ) from exc
    return regex.compile(rf"(?:{'|'.join(classes)})+")


def piece_text(token: str, prefix: str) -> str:
    """The characters a vocabulary piece matches in a word ("##ing" -> "ing", "▁word" -> "word")."""
    return token[len(prefix) :] if prefix and token.startswith(prefix) and token != prefix else token


def piece_vocab(tokenizer_json: dict[str, Any]) -> tuple[dict[str, int], str]:
    """(piece -> id, the marker piece_text strips: WordPiece's continuation prefix, Unigram's ▁ word start)
    of a WordPiece or Unigram tokenizer.json. BPE cannot be trimmed this way: its merges build pieces from
    other pieces, so dropping one can change how the kept ones are reached."""
    model = tokenizer_json["model"]
    if model.get("type") == "WordPiece":
        return model["vocab"], model.get("continuing_subword_prefix", "##")
    if model.get("type") == "Unigram":
        return {piece: i for i, (piece, _score) in enumerate(model["vocab"])}, WORD_START
    raise TrimError(
        f"the bundle's tokenizer is {model.get('type')}; only WordPiece (BERT, DistilBERT) and "
        "SentencePiece Unigram (XLM-R) vocabularies can be trimmed"
    )


BYTE_PIECE = regex.compile(r"<0x[0-9A-F]{2}>")  # SentencePiece's byte-fallback pieces


def processor_steps(tokenizer_json: dict[str, Any]) -> list[dict[str, Any]]:
    """The post-processor, alone or the steps of its Sequence: where the inserted special ids are named."""
    processor = tokenizer_json.get("post_processor") or {}
    return [processor, *processor.get("processors", [])]


def special_ids(tokenizer_json: dict[str, Any]) -> set[int]:
    """Ids always kept: added and special tokens, the unknown piece, the ids the post-processor inserts and,
    when the model falls back to bytes for characters it lacks, its 256 byte pieces (kept-script text can
    need them: a character missing from the vocabulary is spelt in bytes)."""
    kept = {token["id"] for token in tokenizer_json.get("added_tokens", [])}
    model = tokenizer_json["model"]
    vocab, _ = piece_vocab(tokenizer_json)
    if model.get("type") == "Unigram" and model.get("unk_id") is not None:
        kept.add(model["unk_id"])
    if model.get("unk_token") in vocab:
        kept.add(vocab[model["unk_token"]])
    for step in processor_steps(tokenizer_json):
        kept.update(step[key][1] for key in ("cls", "sep") if key in step)  # BertProcessing, RobertaProcessing
        kept.update(i for special in step.get("special_tokens", {}).values() for i in special["ids"])
    if model.get("byte_fallback"):
        kept.update(i for piece, i in vocab.items() if BYTE_PIECE.fullmatch(piece))
    return kept


def keep_by_scripts(tokenizer_json: dict[str, Any], scripts: list[str]) -> list[int]:
    """Ids of the pieces made only of the named scripts' characters, plus specials, in id order."""
    vocab, prefix = piece_vocab(tokenizer_json)
    pattern = script_pattern(scripts)
    kept = special_ids(tokenizer_json)
    kept.update(i for token, i in vocab.items() if pattern.fullmatch(piece_text(token, prefix)))
    return sorted(kept)


def scripts_of(texts: Iterable[str]) -> set[str]:
    """The scripts of `_SCRIPT_NAMES` that the letters of `texts` are written in."""
    letters = set("".join(texts))
    return {name for name, chars in _SCRIPT_CHARS.items() if any(chars.match(c) for c in letters)}


def keep_by_corpus(
    tokenizer: Tokenizer, tokenizer_json: dict[str, Any], texts: list[str], min_count: int
) -> tuple[list[int], list[str]]:
    """Ids used at least `min_count` times when tokenizing `texts`, plus specials, plus every
    single-character piece (bare and continuation) of the scripts the corpus is written in, so that any
    text in those scripts still tokenizes (in smaller pieces rather than [UNK]). Also the scripts found."""
    vocab, prefix = piece_vocab(tokenizer_json)
    counts: Counter[int] = Counter()
    for encoding in tokenizer.encode_batch(texts, add_special_tokens=False):
        counts.update(encoding.ids)
    scripts = sorted(scripts_of(texts))
    pattern = script_pattern(scripts)
    kept = special_ids(tokenizer_json) | {i for i, n in counts.items() if n >= min_count}
    kept.update(
        i
        for token, i in vocab.items()
        if len(piece_text(token, prefix)) == 1 and pattern.fullmatch(piece_text(token, prefix))
    )
    return sorted(kept), scripts


def trimmed_tokenizer_json(tokenizer_json: dict[str, Any], kept: list[int]) -> dict[str, Any]:
    """The tokenizer with only the `kept` ids, renumbered 0..len(kept)-1 in their original order."""
    new_id = {old: new for new, old in enumerate(kept)}
    data = json.loads(json.dumps(tokenizer_json))  # a deep copy
    model = data["model"]
    if model["type"] == "Unigram":  # a list of [piece, score]: the id is the position
        model["vocab"] = [model["vocab"][i] for i in kept]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    else:
        vocab, _ = piece_vocab(data)
        model["vocab"] = {token: new_id[i] for token, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i in new_id}
    for token in data.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    for step in processor_steps(data):
        for key in ("cls", "sep"):  # BertProcessing, RobertaProcessing: ["[CLS]", 101]
            if key in step:
                step[key][1] = new_id[step[key][1]]
        for special in step.get("special_tokens", {}).values():  # TemplateProcessing
            special["ids"] = [new_id[i] for i in special["ids"]]
    return data


def trim_model(path: Path, target: Path, kept: list[int], rows: int) -> list[str]:
    """Write the ONNX model at `path` with only the `kept` rows of every embedding-table initializer (the
    tensors whose first axis has `rows` entries: the FP32 table, or an INT8 table and its row scales);
    returns the file names written."""
    model = onnx.load(str(path))
    index = np.asarray(kept)
    trimmed = 0
    for position, tensor in enumerate(model.graph.initializer):
        if tensor.dims and tensor.dims[0] == rows:
            array = numpy_helper.to_array(tensor)[index]
            model.graph.initializer[position].CopyFrom(numpy_helper.from_array(array, tensor.name))
            trimmed += 1
    if not trimmed:
        raise TrimError(f"{path} has no embedding table with {rows} rows; the manifest and model disagree")
    return save_model(model, target)


def trim_bundle(
    source: str | Path, output: str | Path, kept: list[int], record: dict[str, Any], force: bool = False
) -> Bundle:
    """Write a copy of the bundle at `source` to `output` with only the `kept` vocabulary ids, in the
    tokenizer and in every model. `record` (how `kept` was chosen) goes into the manifest's `trim`."""
    bundle = Bundle.open(source)
    for name in bundle.manifest.files:  # a modified file would otherwise come out re-signed
        bundle.verify_file(name)
    tokenizer_json = json.loads(bundle.file(TOKENIZER_NAME).read_text(encoding="utf-8"))
    manifest = copy.deepcopy(bundle.manifest)
    rows = manifest.embedding_rows
    if manifest.trim:
        raise TrimError(f"{bundle.path} is already trimmed; trim the original bundle instead")
    new_id = {old: new for new, old in enumerate(kept)}
    with staged_folder(output, force, bundle.path) as staging:
        data = trimmed_tokenizer_json(tokenizer_json, kept)
        (staging / TOKENIZER_NAME).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        written = [
            file
            for name in bundle.models.values()
            for file in trim_model(bundle.file(name), staging / name, kept, rows)
        ]
        for name in manifest.files:
            if not (staging / name).exists():  # reports and other files carry over as they are
                shutil.copyfile(bundle.file(name), staging / name)
        for special in manifest.special_tokens.values():
            special.id = new_id[special.id]
        manifest.vocab_size = manifest.embedding_rows = len(kept)
        manifest.trim = Trim(
            **record, original_vocab_size=bundle.manifest.vocab_size, original_embedding_rows=rows, kept=len(kept)
        )
        names = list(dict.fromkeys([*manifest.files, *written]))  # weights files are new for an older bundle
        trimmed = Bundle(staging, manifest)
        manifest.files = {}
        trimmed.record_files(names)
        trimmed.save()
    return Bundle.open(output)


def coverage(original: Tokenizer, trimmed: Tokenizer, kept: list[int], texts: list[str]) -> float:
    """Share of `texts` (not empty) that tokenize to the same pieces after trimming (ids mapped back to the
    original)."""
    old_ids = np.asarray(kept)
    same = sum(
        a.ids == old_ids[b.ids].tolist() for a, b in zip(original.encode_batch(texts), trimmed.encode_batch(texts))
    )
    return same / len(texts)


def trim(
    source: str | Path,
    output: str | Path,
    scripts: list[str] | None = None,
    corpus: TextSet | None = None,
    min_count: int = 1,
    holdout: float = 0.1,
    force: bool = False,
) -> Bundle:
    """Trim by `scripts` (outputs provably unchanged for text in them) or by `corpus` (keeps what the
    corpus uses; the last `holdout` share of each corpus group is held out to measure coverage)."""
    if (scripts is None) == (corpus is None):
        raise TrimError("give either --scripts or --corpus")
    bundle = Bundle.open(source)
    tokenizer_json = json.loads(bundle.file(TOKENIZER_NAME).read_text(encoding="utf-8"))
    if corpus is None:
        kept = keep_by_scripts(tokenizer_json, scripts or [])
        record: dict[str, Any] = {"mode": "scripts", "scripts": scripts}
    else:
        if not 0 <= holdout < 1 or min_count < 1:
            raise TrimError("--holdout must be in [0, 1) and --min-count at least 1")
        sentences = corpus.sentences()
        split = {group: len(texts) - int(len(texts) * holdout) for group, texts in sentences.items()}
        seen = [t for group, texts in sentences.items() for t in texts[: split[group]]]
        tokenizer = Tokenizer.from_str(json.dumps(tokenizer_json))
        kept, found = keep_by_corpus(tokenizer, tokenizer_json, seen, min_count)
        trimmed = Tokenizer.from_str(json.dumps(trimmed_tokenizer_json(tokenizer_json, kept)))
        held_out = {group: texts[split[group] :] for group, texts in sentences.items()}
        record = {
            "mode": "corpus",
            "scripts": found,
            "min_count": min_count,
            "sentences": len(seen),
            "holdout": holdout,
            "coverage": {
                group: {"sentences": len(texts), "unchanged": coverage(tokenizer, trimmed, kept, texts)}
                for group, texts in held_out.items()
                if texts
            },
        }  # none held out: not measured
    return trim_bundle(bundle.path, output, kept, record, force)
