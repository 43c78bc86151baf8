"""The accuracy report: a candidate model (INT8) against the bundle's float model, per language, and the
gate that judges it. Needs only the runtime (numpy + onnxruntime): `mbert-edge verify` runs on a slim
install, and `quantize` imports it from here.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..textdata import TextSet
from .runner import Runner



def _group_metrics(reference: list[np.ndarray], candidate: list[np.ndarray], embeddings: bool,
                   gold: list[int] | None) -> dict[str, Any]:
    diffs = np.concatenate([np.abs(r - c).ravel() for r, c in zip(reference, candidate)])
    row = {"texts": len(reference), "max_abs_diff": float(diffs.max()), "mean_abs_diff": float(diffs.mean())}
    if embeddings:
        ref, cand = np.stack(reference), np.stack(candidate)
        cosine = (ref * cand).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1) + 1e-12)
        row.update(mean_cosine=float(cosine.mean()), min_cosine=float(cosine.min()))
        return row
    # Sequence tasks: one decision per text; token tasks: one per real token.
    ref_top = np.concatenate([np.atleast_2d(r).argmax(-1) for r in reference])
    cand_top = np.concatenate([np.atleast_2d(c).argmax(-1) for c in candidate])
    row["decisions"] = int(ref_top.size)
    row["agreement"] = float((ref_top == cand_top).mean())
    if gold is not None and reference[0].ndim == 1:
        gold_arr = np.asarray(gold)
        row["accuracy_reference"] = float((ref_top == gold_arr).mean())
        row["accuracy_candidate"] = float((cand_top == gold_arr).mean())
    return row


def compare(task: str, reference: Runner, candidate: Runner, textset: TextSet, batch_size: int = 32,
            advance: Callable[[int], None] = lambda n: None,
            reference_outputs: dict[str, list[np.ndarray]] | None = None) -> dict[str, Any]:
    """Per-group and overall figures of `candidate` against `reference` on the same texts, for a bundle of
    `task` (`reference_outputs`, per group, spares recomputing them when one reference meets many candidates)."""
    embeddings = task == "feature-extraction"
    groups: dict[str, dict[str, Any]] = {}
    for name, texts in textset.texts.items():
        ref = reference_outputs[name] if reference_outputs else reference.head_outputs(texts, batch_size)
        cand = candidate.head_outputs(texts, batch_size)
        groups[name] = _group_metrics(ref, cand, embeddings, textset.labels.get(name))
        advance(len(texts))
    rows = list(groups.values())
    sizes = [r["texts"] for r in rows]
    overall: dict[str, Any] = {"texts": sum(sizes), "max_abs_diff": max(r["max_abs_diff"] for r in rows),
                               "mean_abs_diff": float(np.average([r["mean_abs_diff"] for r in rows], weights=sizes))}
    if embeddings:
        overall["mean_cosine"] = float(np.average([r["mean_cosine"] for r in rows], weights=sizes))
        overall["min_cosine"] = min(r["min_cosine"] for r in rows)
        overall["worst_group"] = min(groups, key=lambda g: groups[g]["min_cosine"])
    else:
        weights = [r["decisions"] for r in rows]
        overall["agreement"] = float(np.average([r["agreement"] for r in rows], weights=weights))
        overall["worst_group"] = min(groups, key=lambda g: groups[g]["agreement"])
        overall["worst_agreement"] = groups[overall["worst_group"]]["agreement"]
        labelled = [r for r in rows if "accuracy_reference" in r]
        if labelled:
            w = [r["texts"] for r in labelled]
            overall["accuracy_reference"] = float(np.average([r["accuracy_reference"] for r in labelled], weights=w))
            overall["accuracy_candidate"] = float(np.average([r["accuracy_candidate"] for r in labelled], weights=w))
    return {"reference": reference.name, "candidate": candidate.name,
            "overall": overall, "groups": groups}


def gate_failure(report: dict[str, Any], min_agreement: float, min_cosine: float) -> str | None:
    """Why the report fails the gate (every group must pass), or None when it passes."""
    failing = []
    for name, row in report["groups"].items():
        if "agreement" in row and row["agreement"] < min_agreement:
            failing.append(f"{name} agreement {row['agreement']:.4f} < {min_agreement}")
        if "min_cosine" in row and row["min_cosine"] < min_cosine:
            failing.append(f"{name} min cosine {row['min_cosine']:.4f} < {min_cosine}")
    if not failing:
        return None
    more = f" (and {len(failing) - 3} more)" if len(failing) > 3 else ""
    return "; ".join(failing[:3]) + more


def markdown(report: dict[str, Any]) -> str:
    """A short Markdown table of the report, one row per group and an overall row."""
    embeddings = "mean_cosine" in report["overall"]
    cols = (["mean cos", "min cos"] if embeddings else ["agreement", "acc ref", "acc cand"]) + ["max |Δ|", "mean |Δ|"]
    lines = [f"Candidate `{report['candidate']}` vs `{report['reference']}`", "",
             "| group | texts | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]

    def fmt(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        return "" if value is None else f"{value:.4f}" if "diff" not in key else f"{value:.3g}"

    keys = (["mean_cosine", "min_cosine"] if embeddings else ["agreement", "accuracy_reference", "accuracy_candidate"])
    keys += ["max_abs_diff", "mean_abs_diff"]
    for name, row in [*report["groups"].items(), ("**overall**", report["overall"])]:
        lines.append(f"| {name} | {row['texts']} | " + " | ".join(fmt(row, k) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], folder: Path, stem: str) -> list[str]:
    """Write `<stem>.json` and `<stem>.md` into `folder`; returns the file names."""
    import json

    (folder / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (folder / f"{stem}.md").write_text(markdown(report), encoding="utf-8")
    return [f"{stem}.json", f"{stem}.md"]
