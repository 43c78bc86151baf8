"""Multilingual text sets for parity, accuracy and calibration: the built-in samples and user data.

A text set maps a language (or file) name to its sentences, or to pairs of texts (premise and hypothesis, query
and passage) for models that read two, and optionally to integer labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DataError
from .runtime.textinput import Pair, TextInput
from .tasks import TASKS

if TYPE_CHECKING:
    from .bundle import Manifest

SAMPLE_RESOURCE = "sample_sentences.tsv"
PAIR_SAMPLE_RESOURCE = "sample_pairs.tsv"
QUESTION_SAMPLE_RESOURCE = "sample_questions.tsv"


@dataclass
class TextSet:
    """Sentences (or pairs of texts: a group holds one or the other) grouped by language; `labels` holds gold
    labels for the groups that have them."""

    texts: dict[str, list[TextInput]]
    labels: dict[str, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(v) for v in self.texts.values())

    def sentences(self) -> dict[str, list[str]]:
        """Each group's texts, a pair's two texts as two: for what counts tokens or times single texts."""
        return {
            group: [text for item in items for text in ((item,) if isinstance(item, str) else item)]
            for group, items in self.texts.items()
        }

    def limited(self, per_group: int | None) -> TextSet:
        """The first `per_group` sentences (and labels) of each group; all of them when None."""
        if per_group is None:
            return self
        return TextSet(
            {k: v[:per_group] for k, v in self.texts.items()},
            {k: v[:per_group] for k, v in self.labels.items()},
        )


def builtin_sample(pairs: bool = False, questions: bool = False) -> TextSet:
    """The shipped sample, written for this project: 60 sentences in 17 languages and 10 scripts; with `pairs`
    60 pairs of texts in 12 languages (premises with entailed, contradicted and neutral hypotheses; queries with
    passages); with `questions` 60 (question, context) pairs in the same 12 languages, each context holding its
    answer."""
    name = QUESTION_SAMPLE_RESOURCE if questions else PAIR_SAMPLE_RESOURCE if pairs else SAMPLE_RESOURCE
    raw = (resources.files("mbert_edge") / "data" / name).read_text(encoding="utf-8")
    texts: dict[str, list[TextInput]] = {}
    for line in raw.splitlines():
        if line and not line.startswith("#"):
            lang, *fields = line.split("\t")
            texts.setdefault(lang, []).append((fields[0], fields[1]) if pairs or questions else fields[0])
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


def _read_pairs(path: Path) -> tuple[list[Pair], list[int] | None]:
    """A `.tsv` of pairs, `text<TAB>text_pair[<TAB>label]` per line: the pairs, and their labels when every line
    has one."""
    rows = [[field.strip() for field in line.split("\t")] for line in _read_lines(path)]
    widths = {len(row) for row in rows}
    if not rows or not widths <= {2, 3} or len(widths) > 1 or any(not field for row in rows for field in row[:2]):
        raise DataError(
            f"{path}: every line must be text<TAB>text_pair, or every line text<TAB>text_pair<TAB>label (an integer)"
        )
    pairs: list[Pair] = [(row[0], row[1]) for row in rows]
    if widths == {2}:
        return pairs, None
    try:
        return pairs, [int(row[2]) for row in rows]
    except ValueError as exc:
        raise DataError(f"{path}: the third column holds label ids, one integer per line ({exc})") from exc


def load_textset(path: str | Path) -> TextSet:
    """Read `--data`: a text file (one sentence per line), a `.tsv` of pairs (`text<TAB>text_pair[<TAB>label]`),
    a folder of `<lang>.txt` (or `<lang>.tsv`) files, or labelled texts `<name>_text.txt` + `<name>_labels.txt`
    (in the folder or in its sub-folders, one level deep: `sentiment/french/val_text.txt` becomes group
    `french/val`)."""
    root = Path(path)
    if root.is_file() and root.suffix == ".tsv":
        pairs, labels = _read_pairs(root)
        return TextSet({root.stem: list(pairs)}, {root.stem: labels} if labels else {})
    if root.is_file():
        lines = _read_lines(root)
        if not lines:
            raise DataError(f"{root} has no text; pass a UTF-8 text file with one sentence per line")
        return TextSet({root.stem: list(lines)})
    if not root.is_dir():
        raise DataError(f"data path {root} does not exist; pass a text file or a folder of <lang>.txt files")
    result = TextSet({})
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    for folder in folders:
        prefix = "" if folder == root else f"{folder.name}/"
        for tsv in sorted(folder.glob("*.tsv")):
            pairs, labels = _read_pairs(tsv)
            result.texts[prefix + tsv.stem] = list(pairs)
            if labels:
                result.labels[prefix + tsv.stem] = labels
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
                result.texts[prefix + name] = list(texts)
    if not result.texts:
        raise DataError(
            f"no .txt or .tsv files with text found in {root}; expected <lang>.txt, <name>_text.txt or <lang>.tsv files"
        )
    return result


def evaluation_texts(
    data: str | Path | None, labels: list[str] | None = None, pairs: bool = False, questions: bool = False
) -> TextSet:
    """`--data` when given (labelled texts allowed), else the built-in multilingual sample (of pairs of texts, for a
    model that reads `pairs`; of questions with contexts, for `questions`). With the model's `labels` (a
    classifier's), gold labels must be ids among them."""
    textset = load_textset(data) if data is not None else builtin_sample(pairs, questions)
    if labels is not None:
        for group, gold in textset.labels.items():
            wrong = sorted(set(gold) - set(range(len(labels))))
            if wrong:
                raise DataError(
                    f"labels of {group}: {wrong[0]} is not one of the model's label ids "
                    f"0..{len(labels) - 1} ({', '.join(labels)})"
                )
    return textset


def with_masks(textset: TextSet, mask_token: str) -> TextSet:
    """Each text with `mask_token` in place of its middle word (or middle character, in scripts written without
    spaces), unless it holds one already: fill-mask's evaluation text (a pair's two texts are two texts)."""

    def masked(text: str) -> str:
        if mask_token in text:
            return text
        words = text.split(" ")
        if len(words) >= 3:
            words[len(words) // 2] = mask_token
            return " ".join(words)
        middle = len(text) // 2
        return text[:middle] + mask_token + text[middle + 1 :]

    return TextSet({group: [masked(t) for t in texts] for group, texts in textset.sentences().items()})


def model_texts(data: str | Path | None, manifest: Manifest) -> TextSet:
    """What a bundle's model is judged and calibrated on: `evaluation_texts` (gold labels checked where its task
    has them; pairs for a model that reads pairs, questions with contexts for question answering), with a mask token in each text for fill-mask."""
    task = TASKS[manifest.task]
    texts = evaluation_texts(data, manifest.labels if task.labels_texts else None, manifest.reads_pairs, task.questions)
    return with_masks(texts, manifest.special_tokens["mask"].token) if task.masked else texts
