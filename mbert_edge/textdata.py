"""Multilingual text sets for parity, accuracy and calibration: the built-in sample and user data.

A text set maps a language (or file) name to its sentences, and optionally to integer labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import DataError

SAMPLE_RESOURCE = "sample_sentences.tsv"


@dataclass
class TextSet:
    """Sentences grouped by language; `labels` holds gold labels for the groups that have them."""

    texts: dict[str, list[str]]
    labels: dict[str, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(v) for v in self.texts.values())

    def limited(self, per_group: int | None) -> TextSet:
        """The first `per_group` sentences (and labels) of each group; all of them when None."""
        if per_group is None:
            return self
        return TextSet(
            {k: v[:per_group] for k, v in self.texts.items()},
            {k: v[:per_group] for k, v in self.labels.items()},
        )


def builtin_sample() -> TextSet:
    """The shipped sample: 60 sentences in 17 languages and 10 scripts, written for this project."""
    raw = (resources.files("mbert_edge") / "data" / SAMPLE_RESOURCE).read_text(encoding="utf-8")
    texts: dict[str, list[str]] = {}
    for line in raw.splitlines():
        if line and not line.startswith("#"):
            lang, sentence = line.split("\t", 1)
            texts.setdefault(lang, []).append(sentence)
    return TextSet(texts)


def _read_lines(path: Path, keep_blank: bool = False) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}; pass a UTF-8 text file with one sentence per line") from exc
    return [line.strip() for line in lines if keep_blank or line.strip()]


def _read_labels(path: Path, expected: int) -> list[int]:
    lines = _read_lines(path, keep_blank=True)  # a blank line is an error, not a shift of every later label
    try:
        labels = [int(x) for x in lines]
    except ValueError as exc:
        raise DataError(f"{path}: labels must be one integer per line ({exc})") from exc
    if len(labels) != expected:
        raise DataError(f"{path}: {len(labels)} labels for {expected} texts; the two files must have equal line counts")
    return labels


def load_textset(path: str | Path) -> TextSet:
    """Read `--data`: a text file (one sentence per line), a folder of `<lang>.txt` files, or labelled
    pairs `<name>_text.txt` + `<name>_labels.txt` (in the folder or in its sub-folders, one level deep:
    `sentiment/french/val_text.txt` becomes group `french/val`)."""
    root = Path(path)
    if root.is_file():
        lines = _read_lines(root)
        if not lines:
            raise DataError(f"{root} has no text; pass a UTF-8 text file with one sentence per line")
        return TextSet({root.stem: lines})
    if not root.is_dir():
        raise DataError(f"data path {root} does not exist; pass a text file or a folder of <lang>.txt files")
    result = TextSet({})
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    for folder in folders:
        prefix = "" if folder == root else f"{folder.name}/"
        for file in sorted(folder.glob("*.txt")):
            if file.name.endswith("_labels.txt"):
                continue
            if file.name.endswith("_text.txt"):
                name = file.name[: -len("_text.txt")]
                label_file = file.with_name(f"{name}_labels.txt")
                texts = _read_lines(file, keep_blank=label_file.exists())  # keep lines aligned with labels
                if label_file.exists():
                    result.labels[prefix + name] = _read_labels(label_file, len(texts))
            else:
                name = file.stem
                texts = _read_lines(file)
            if texts:
                result.texts[prefix + name] = texts
    if not result.texts:
        raise DataError(f"no .txt files with text found in {root}; expected <lang>.txt or <name>_text.txt files")
    return result


def evaluation_texts(data: str | Path | None, labels: list[str] | None = None) -> TextSet:
    """`--data` when given (labelled pairs allowed), else the built-in multilingual sample. With the model's
    `labels` (a classifier's), gold labels must be ids among them."""
    textset = load_textset(data) if data is not None else builtin_sample()
    if labels is not None:
        for group, gold in textset.labels.items():
            wrong = sorted(set(gold) - set(range(len(labels))))
            if wrong:
                raise DataError(
                    f"labels of {group}: {wrong[0]} is not one of the model's label ids "
                    f"0..{len(labels) - 1} ({', '.join(labels)})"
                )
    return textset
