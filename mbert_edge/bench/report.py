"""`mbert-edge bench` results as a terminal/Markdown table, JSON, and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import MbertEdgeError


def _flag(row: dict[str, Any]) -> str:
    return " (wide spread)" if row["wide_spread"] else ""


def machine_line(machine: dict[str, Any]) -> str:
    """`measure.machine`'s record in one line, as every report starts."""
    versions = ", ".join(f"{package} {number}" for package, number in machine["versions"].items())
    return f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores, flags {' '.join(machine['flags'])}; {versions}"


def markdown(results: dict[str, Any]) -> str:
    """All figures as Markdown tables (also what the terminal shows)."""
    lines = [f"# mbert-edge bench: {results['bundle']}", "", machine_line(results["machine"]) + ".", ""]
    variants = results["variants"]
    lengths = sorted({int(n) for v in variants.values() for n in v["latency_by_length"]})
    lines += [
        "## Batch-1 latency at exact lengths (graph only), p50 / p90 / p99 ms",
        "",
        "| precision | " + " | ".join(f"{n} tokens" for n in lengths) + " |",
        "|---|" + "---|" * len(lengths),
    ]
    for name, v in variants.items():
        cells = [
            f"{r['p50_ms']:.1f} / {r['p90_ms']:.1f} / {r['p99_ms']:.1f}{_flag(r)}"
            for r in (v["latency_by_length"][str(n)] for n in lengths)
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## End to end on real sentences ({results['data']['sentences']} sentences, "
        f"{results['data']['groups']} groups), tokenisation included",
        "",
        "| precision | p50 ms | p90 ms | p99 ms | runs | throughput sentences/s (tokens/s) by batch size | "
        "cold start s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in variants.items():
        e = v["end_to_end"]
        rates = ", ".join(
            f"b{b}: {r['sentences_per_s']:.0f} ({r['tokens_per_s']:.0f})" for b, r in v["throughput"].items()
        )
        cold = v.get("cold_start")
        start = f"{cold['seconds']:.2f} | {cold['peak_rss_mb']:.0f}" if cold else "- | -"
        lines.append(
            f"| {name} | {e['p50_ms']:.2f} | {e['p90_ms']:.2f} | {e['p99_ms']:.2f}{_flag(e)} | {e['runs']} | "
            f"{rates} | {start} |"
        )
    sweep = results.get("thread_sweep")
    if sweep:
        lines += [
            "",
            f"## Threads ({sweep['precision']}; latency at {sweep['length']} tokens, throughput at batch 32)",
            "",
            "| intra-op threads | p50 ms | sentences/s |",
            "|---|---|---|",
        ]
        for threads, row in sweep["threads"].items():
            lines.append(f"| {threads} | {row['latency']['p50_ms']:.1f} | {row['throughput']['sentences_per_s']:.0f} |")
        lines += [
            "",
            f"Recommended: `intra_op_threads={sweep['recommended_intra_op_threads']}`"
            + (" (saved in the bundle)" if results.get("saved") else " (`--save` stores it in the bundle)"),
        ]
    if any(r["wide_spread"] for v in variants.values() for r in [v["end_to_end"], *v["latency_by_length"].values()]):
        lines += [
            "",
            "Note: a wide spread (p90 > 1.5 x p50) means the machine was busy or throttling; re-run "
            "on an idle machine for steady figures.",
        ]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], folder: Path) -> list[Path]:
    """latency.png (p50 latency vs sequence length per precision) and throughput.png (bars by batch size)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError as exc:
        raise MbertEdgeError("PNG plots need matplotlib: pip install 'mbert-edge[bench]' (or drop --out)") from exc
    variants = results["variants"]
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, v in variants.items():
        lengths = sorted(int(n) for n in v["latency_by_length"])
        axes.plot(lengths, [v["latency_by_length"][str(n)]["p50_ms"] for n in lengths], marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set(
        xlabel="sequence length (tokens)",
        ylabel="p50 latency, batch 1 (ms)",
        title=f"{Path(results['bundle']).name}: latency",
    )
    axes.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes.set_xticks(lengths, [str(n) for n in lengths])
    latency = _save(figure, axes, folder / "latency.png")
    figure, axes = plt.subplots(figsize=(6, 4))
    names = list(variants)
    batches = list(next(iter(variants.values()))["throughput"])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        axes.bar(
            [j + i * width for j in range(len(batches))],
            [variants[name]["throughput"][b]["sentences_per_s"] for b in batches],
            width,
            label=name,
        )
    axes.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(batches))], [f"batch {b}" for b in batches])
    axes.set(ylabel="sentences / s", title=f"{Path(results['bundle']).name}: throughput on real sentences")
    return [latency, _save(figure, axes, folder / "throughput.png")]


def _save(figure: Any, axes: Any, path: Path) -> Path:
    """Legend, layout, PNG at 120 dpi; the figure is closed."""
    import matplotlib.pyplot as plt

    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write(results: dict[str, Any], folder: Path) -> list[Path]:
    """bench.json, bench.md and the two plots in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = plot(results, folder)  # first: a missing matplotlib fails before anything is written
    (folder / "bench.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (folder / "bench.md").write_text(markdown(results), encoding="utf-8")
    return [folder / "bench.json", folder / "bench.md", *plots]
