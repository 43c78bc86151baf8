"""The accuracy report: a candidate model (INT8) against the bundle's float model, per language, and the
gate that judges it. Needs only the runtime (numpy + onnxruntime): `mbert-edge verify` runs on a slim
install, and `quantize` imports it from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np
from tokenizers import Encoding

from ..tasks import TASKS
from ..textdata import TextSet
from .question_answerer import best_span
from .runner import Runner

# The gate's rules (README, "Accuracy gate"). A group is judged on its own only with at least
# JUDGED_ALONE / (1 - min_agreement) decisions (40 at 0.90, 200 at 0.98), where one disagreement costs at
# most a quarter of what the threshold allows; smaller groups count only in the pooled figure, which below
# that size must be *confidently* under the threshold to fail: its one-sided 95% Wilson upper bound.
JUDGED_ALONE = 4
Z_95 = 1.645
# However few the flips, the logits must not move more than this share of their own spread (RMS of the
# change over RMS of the FP32 logits, each row centred); healthy INT8 models stay far below it, negated logits
# far above (benchmarks/README.md, "Figures behind the defaults").
MAX_LOGIT_SHIFT = 0.5


class Figures(TypedDict, total=False):
    """One group's figures (a language, a file), or all groups' pooled (`Report["overall"]`)."""

    texts: int
    max_abs_diff: float
    mean_abs_diff: float
    mean_cosine: float  # embeddings
    min_cosine: float  # embeddings
    decisions: int  # labels: one per text, or per real token
    agreement: float  # labels: top-1 agreement with the reference
    top5_overlap: float  # fill-mask: the share of the reference's 5 best tokens among the candidate's 5 best
    answer_f1: float  # question answering: token F1 of the candidate's answer spans against the reference's
    logit_shift: float  # labels: RMS logit change over the reference logits' RMS
    accuracy_reference: float  # labels, where the text had gold labels
    accuracy_candidate: float
    worst_group: str  # overall only
    worst_agreement: float  # overall only, labels


class GateRecord(TypedDict):
    """How the gate judged a labels report (`gate_failure`)."""

    judged_alone_from: float
    small_groups: list[str]
    overall_bound: float
    max_logit_shift: float
    top5_bound: float | None  # fill-mask: the pooled top-5 overlap, or its upper bound for few decisions


class Report(TypedDict, total=False):
    """A candidate against the reference: `kind` says which figures it holds (labels: agreement; embeddings:
    cosines); `gate` is added once the gate has judged it."""

    kind: Literal["labels", "embeddings"]
    reference: str
    candidate: str
    overall: Figures
    groups: dict[str, Figures]
    gate: GateRecord


def wilson_upper(agreement: float, n: int, z: float = Z_95) -> float:
    """One-sided upper confidence bound of a proportion observed as `agreement` over `n` trials (Wilson)."""
    centre = agreement + z * z / (2 * n)
    spread = z * math.sqrt(agreement * (1 - agreement) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def judged_alone_from(min_agreement: float) -> float:
    """How many decisions a group needs to be judged on its own against `min_agreement`."""
    return math.ceil(JUDGED_ALONE / (1 - min_agreement) - 1e-9) if min_agreement < 1 else math.inf  # 40, not 41, at 0.9


def _logit_moves(reference: list[np.ndarray], candidate: list[np.ndarray]) -> tuple[float, float]:
    """(sum of squared changes, sum of squared row-centred FP32 logits): the parts of the logit shift."""
    moved = sum(float(((c - r) ** 2).sum()) for r, c in zip(reference, candidate))
    spread = sum(float(((r - r.mean(axis=-1, keepdims=True)) ** 2).sum()) for r in reference)
    return moved, spread  # per output: rows of different widths (question answering's windows) add up alike


def _top5_overlap(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """The mean share of each row's 5 best reference tokens among its 5 best candidate tokens."""
    ref, cand = np.concatenate(reference), np.concatenate(candidate)
    best_ref, best_cand = np.argsort(-ref, axis=-1)[:, :5], np.argsort(-cand, axis=-1)[:, :5]
    return float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(best_ref.tolist(), best_cand.tolist())]))


def _span_f1(reference: tuple[int, int], candidate: tuple[int, int]) -> float:
    """Token F1 of a candidate answer span against the reference's (SQuAD's measure, on the spans' tokens)."""
    overlap = min(reference[1], candidate[1]) - max(reference[0], candidate[0]) + 1
    if overlap <= 0:
        return 0.0
    precision = overlap / (candidate[1] - candidate[0] + 1)
    recall = overlap / (reference[1] - reference[0] + 1)
    return 2 * precision * recall / (precision + recall)


def _answer_metrics(windows: list[Encoding], reference: list[np.ndarray], candidate: list[np.ndarray]) -> Figures:
    """Question answering: one decision per question, its answer span equal to the reference's (exact match,
    the `agreement`) and its token F1; the logit shift is over each window's start and end logits."""
    row = _group_metrics([r.T for r in reference], [c.T for c in candidate], False, None)
    spans = [(best_span(w, r), best_span(w, c)) for w, r, c in zip(windows, reference, candidate)]
    row["decisions"] = len(spans)
    row["agreement"] = float(np.mean([a == b for a, b in spans]))
    row["answer_f1"] = float(np.mean([_span_f1(a, b) for a, b in spans]))
    return row


def _group_metrics(
    reference: list[np.ndarray],
    candidate: list[np.ndarray],
    embeddings: bool,
    gold: list[int] | None,
    masked: bool = False,
) -> Figures:
    diffs = np.concatenate([np.abs(r - c).ravel() for r, c in zip(reference, candidate)])
    row: Figures = {"texts": len(reference), "max_abs_diff": float(diffs.max()), "mean_abs_diff": float(diffs.mean())}
    if embeddings:
        ref, cand = np.stack(reference), np.stack(candidate)
        cosine = (ref * cand).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1) + 1e-12)
        row["mean_cosine"], row["min_cosine"] = float(cosine.mean()), float(cosine.min())
        return row
    # Sequence tasks: one decision per text; token tasks: one per real token.
    ref_top = np.concatenate([np.atleast_2d(r).argmax(-1) for r in reference])
    cand_top = np.concatenate([np.atleast_2d(c).argmax(-1) for c in candidate])
    row["decisions"] = int(ref_top.size)
    row["agreement"] = float((ref_top == cand_top).mean())
    moved, spread = _logit_moves(reference, candidate)
    row["logit_shift"] = math.sqrt(moved / max(spread, 1e-30))
    if masked:
        row["top5_overlap"] = _top5_overlap(reference, candidate)
    if gold is not None and reference[0].ndim == 1:
        gold_arr = np.asarray(gold)
        row["accuracy_reference"] = float((ref_top == gold_arr).mean())
        row["accuracy_candidate"] = float((cand_top == gold_arr).mean())
    return row


def compare(
    task: str,
    reference: Runner,
    candidate: Runner,
    textset: TextSet,
    batch_size: int = 32,
    advance: Callable[[int], None] = lambda n: None,
    reference_outputs: dict[str, list[np.ndarray]] | None = None,
) -> Report:
    """Per-group and overall figures of `candidate` against `reference` on the same texts, for a bundle of
    `task` (`reference_outputs`, per group, spares recomputing them when one reference meets many candidates)."""
    embeddings = not TASKS[task].labelled
    groups: dict[str, Figures] = {}
    moves = np.zeros(2)
    for name, texts in textset.texts.items():
        ref = reference_outputs[name] if reference_outputs else reference.head_outputs(texts, batch_size)
        cand = candidate.head_outputs(texts, batch_size)
        if TASKS[task].questions:
            groups[name] = _answer_metrics(reference.first_windows(texts), ref, cand)
            ref, cand = [r.T for r in ref], [c.T for c in cand]
        else:
            groups[name] = _group_metrics(ref, cand, embeddings, textset.labels.get(name), TASKS[task].masked)
        if not embeddings:
            moves += _logit_moves(ref, cand)
        advance(len(texts))
    rows = list(groups.values())
    sizes = [r["texts"] for r in rows]
    overall: Figures = {
        "texts": sum(sizes),
        "max_abs_diff": max(r["max_abs_diff"] for r in rows),
        "mean_abs_diff": float(np.average([r["mean_abs_diff"] for r in rows], weights=sizes)),
    }
    if embeddings:
        overall["mean_cosine"] = float(np.average([r["mean_cosine"] for r in rows], weights=sizes))
        overall["min_cosine"] = min(r["min_cosine"] for r in rows)
        overall["worst_group"] = min(groups, key=lambda g: groups[g]["min_cosine"])
    else:
        weights = [r["decisions"] for r in rows]
        overall["decisions"] = sum(weights)
        overall["agreement"] = float(np.average([r["agreement"] for r in rows], weights=weights))
        overall["logit_shift"] = math.sqrt(moves[0] / max(moves[1], 1e-30))
        overall["worst_group"] = min(groups, key=lambda g: groups[g]["agreement"])
        overall["worst_agreement"] = groups[overall["worst_group"]]["agreement"]
        if TASKS[task].questions:
            overall["answer_f1"] = float(np.average([r["answer_f1"] for r in rows], weights=weights))
        if TASKS[task].masked:
            overall["top5_overlap"] = float(np.average([r["top5_overlap"] for r in rows], weights=weights))
        labelled = [r for r in rows if "accuracy_reference" in r]
        if labelled:
            w = [r["texts"] for r in labelled]
            overall["accuracy_reference"] = float(np.average([r["accuracy_reference"] for r in labelled], weights=w))
            overall["accuracy_candidate"] = float(np.average([r["accuracy_candidate"] for r in labelled], weights=w))
    kind: Literal["labels", "embeddings"] = "embeddings" if embeddings else "labels"
    return {
        "kind": kind,
        "reference": reference.name,
        "candidate": candidate.name,
        "overall": overall,
        "groups": groups,
    }


def gate_failure(report: Report, min_agreement: float, min_cosine: float) -> str | None:
    """Why the report fails the gate, or None when it passes; records how it judged in `report["gate"]`.

    Embeddings: every text's cosine must reach `min_cosine`. Labels (a `min_agreement` of 0 turns this off):
    every group large enough to be judged alone (`judged_alone_from`) must reach `min_agreement`; all
    decisions pooled must too (below that size, their Wilson upper bound must), and the logits must not move
    more than `MAX_LOGIT_SHIFT` of their spread. Fill-mask: the top-5 overlap too, by the same rule, each of
    a mask's 5 reference tokens one decision."""
    failing = []
    alone = judged_alone_from(min_agreement)
    small = [name for name, row in report["groups"].items() if row.get("decisions", alone) < alone]
    for name, row in report["groups"].items():
        if "agreement" in row and name not in small and row["agreement"] < min_agreement:
            failing.append(f"{name} agreement {row['agreement']:.4f} < {min_agreement} ({row['decisions']} decisions)")
        if "top5_overlap" in row and name not in small and row["top5_overlap"] < min_agreement:
            failing.append(f"{name} top-5 overlap {row['top5_overlap']:.4f} < {min_agreement}")
        if "min_cosine" in row and row["min_cosine"] < min_cosine:
            failing.append(f"{name} min cosine {row['min_cosine']:.6f} < {min_cosine}")  # .4f showed 1.0000 < 1.0
    overall = report["overall"]
    if "agreement" in overall and min_agreement > 0:
        n, observed = overall["decisions"], overall["agreement"]
        bound = observed if n >= alone else wilson_upper(observed, n)
        report["gate"] = {
            "judged_alone_from": alone,
            "small_groups": small,
            "overall_bound": bound,
            "max_logit_shift": MAX_LOGIT_SHIFT,
            "top5_bound": None,
        }
        if bound < min_agreement:
            how = "" if n >= alone else f", 95% upper bound {bound:.4f}"
            failing.insert(0, f"overall agreement {observed:.4f} < {min_agreement} ({n} decisions{how})")
        if "top5_overlap" in overall:
            top5, tokens = overall["top5_overlap"], 5 * n
            report["gate"]["top5_bound"] = top5_bound = top5 if tokens >= alone else wilson_upper(top5, tokens)
            if top5_bound < min_agreement:
                failing.insert(0, f"overall top-5 overlap {top5:.4f} < {min_agreement} ({tokens} tokens)")
        if overall["logit_shift"] > MAX_LOGIT_SHIFT:
            failing.insert(0, f"logits moved {overall['logit_shift']:.3f} of their spread (> {MAX_LOGIT_SHIFT})")
    if not failing:
        return None
    more = f" (and {len(failing) - 3} more)" if len(failing) > 3 else ""
    return "; ".join(failing[:3]) + more


def markdown(report: Report) -> str:
    """A short Markdown table of the report, one row per group and an overall row."""
    embeddings = report["kind"] == "embeddings"
    masked = "top5_overlap" in report["overall"]
    answers = "answer_f1" in report["overall"]
    cols = ["mean cos", "min cos"] if embeddings else ["agreement", "logit shift", "acc ref", "acc cand"]
    cols += ["top-5 overlap"] if masked else []
    cols += ["answer F1"] if answers else []
    cols[0] = "exact match" if answers else cols[0]  # question answering's agreement: the same answer span
    cols += ["max |Δ|", "mean |Δ|"]
    lines = [
        f"Candidate `{report['candidate']}` vs `{report['reference']}`",
        "",
        "| group | texts | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 2) + "|",
    ]

    def fmt(row: Figures, key: str) -> str:
        value = row.get(key)
        return "" if value is None else f"{value:.4f}" if "diff" not in key else f"{value:.3g}"

    keys = (
        ["mean_cosine", "min_cosine"]
        if embeddings
        else ["agreement", "logit_shift", "accuracy_reference", "accuracy_candidate"]
    )
    keys += ["top5_overlap"] if masked else []
    keys += ["answer_f1"] if answers else []
    keys += ["max_abs_diff", "mean_abs_diff"]
    gate = report.get("gate", {})
    small = set(gate.get("small_groups", ()))
    for name, row in [*report["groups"].items(), ("**overall**", report["overall"])]:
        label = f"{name} (small: pooled)" if name in small else name
        lines.append(f"| {label} | {row['texts']} | " + " | ".join(fmt(row, k) for k in keys) + " |")
    if small:
        lines += [
            "",
            f"Groups of fewer than {gate['judged_alone_from']} decisions are judged only pooled; the pooled "
            f"agreement's 95% upper bound is {gate['overall_bound']:.4f}.",
        ]
    return "\n".join(lines) + "\n"


def write_report(report: Report, folder: Path, stem: str) -> list[str]:
    """Write `<stem>.json` and `<stem>.md` into `folder`; returns the file names."""
    import json

    (folder / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (folder / f"{stem}.md").write_text(markdown(report), encoding="utf-8")
    return [f"{stem}.json", f"{stem}.md"]
