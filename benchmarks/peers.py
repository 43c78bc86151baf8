"""mbert-edge side by side with what users would pick instead, in one run on one machine.

    python benchmarks/peers.py CHECKPOINT BUNDLE [--faithful BUNDLE] --data ../shared/data/tatoeba --out benchmarks/results/NAME

CHECKPOINT is the transformers folder the bundles were exported from (BertForSequenceClassification).
BUNDLE has FP32 and plain INT8 (`mbert-edge quantize`); `--faithful` a bundle quantized with
`--method faithful`. Measured, each with the same threads:
1. transformers `pipeline("text-classification")` on PyTorch FP32;
2. the same with PyTorch dynamic INT8 (`torch.ao.quantization.quantize_dynamic`, Linear layers, qint8);
3. our bundles through `mbert_edge.Classifier`: FP32, plain INT8, faithful INT8; and, as the baseline a
   straightforward runtime would be, the INT8 session fed batches padded to their longest member in input
   order ("plain padding");
4. the machine's limit: the best of a few large MatMuls in ONNX Runtime, FP32 and INT8 (MatMulInteger,
   u8 x s8), in GOP/s, and each variant's share of that roofline at batch 1 / 128 tokens.
5. Hugging Face Optimum (`optimum-onnx`), FP32 with O2 and INT8 with its avx512_vnni dynamic config, in a
   transformers pipeline: optimum_peer.py, run in a venv of its own (Optimum pins an older transformers)
   that this script creates on first use (`--optimum-venv`; `--skip-optimum` leaves it out).
6. the INT8 graphs alone (ours and Optimum's), batch 1 at the corpus's mean length and at 128 tokens, in
   one process and in alternating rounds, since this machine drifts more between runs than they differ;
   and the same for single real sentences end to end, ours against the PyTorch pipelines.
Figures: end-to-end single-sentence latency on real sentences, throughput at batch 32 on all of them,
cold start (fresh process: import + load + first prediction) and its peak RSS.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from mbert_edge import Classifier
from mbert_edge.bench.measure import cold_start as bundle_cold_start
from mbert_edge.bench.measure import (
    exact_length_feed,
    graph_seconds,
    machine,
    pipeline_timings,
    script_cold_start,
    side_by_side,
    summary,
    time_calls,
)
from mbert_edge.bench.report import machine_line
from mbert_edge.bundle import Bundle
from mbert_edge.runtime.batching import padded_inputs
from mbert_edge.runtime.cpus import available_cpus
from mbert_edge.runtime.runner import session_options
from mbert_edge.textdata import load_textset

HERE = Path(__file__).resolve().parent

TORCH_COLD_START = """
import sys, time, json
start = time.perf_counter()
import torch, transformers
torch.set_num_threads(int(sys.argv[3]))
model = transformers.AutoModelForSequenceClassification.from_pretrained(sys.argv[1])
if sys.argv[2] == "int8":
    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
pipe = transformers.pipeline("text-classification", model=model, tokenizer=transformers.AutoTokenizer.from_pretrained(sys.argv[1]))
pipe("Das Essen war großartig")
"""
# Optimum's venv: the torch build this project uses (CPU), and the one optimum-onnx release there is.
OPTIMUM_REQUIREMENTS = (["torch==2.13.0"], ["optimum-onnx[onnxruntime]==0.1.0", "click"])


def gemm_roofline(
    threads: int,
    shapes: tuple[tuple[int, int, int], ...] = (
        (128, 768, 3072),
        (512, 768, 3072),
        (1024, 1024, 4096),
        (2048, 2048, 2048),
    ),
) -> dict[str, float]:
    """GOP/s (2 ops per multiply-add) of ONNX Runtime's MatMul (FP32) and MatMulInteger (INT8, u8 x s8):
    the best over a few large shapes, BERT's among them (one shape alone can understate the peak). The
    weight is a constant, as in every model, so ONNX Runtime prepacks it (as an input it runs slower)."""
    results = {"fp32": 0.0, "int8": 0.0}
    rng = np.random.default_rng(0)
    for m, k, n in shapes:
        for name, op, a_type in (("fp32", "MatMul", TensorProto.FLOAT), ("int8", "MatMulInteger", TensorProto.UINT8)):
            out_type = TensorProto.FLOAT if name == "fp32" else TensorProto.INT32
            weight = rng.integers(-60, 60, (k, n)).astype(np.float32 if name == "fp32" else np.int8)
            graph = helper.make_graph(
                [helper.make_node(op, ["a", "b"], ["c"])],
                "gemm",
                [helper.make_tensor_value_info("a", a_type, [m, k])],
                [helper.make_tensor_value_info("c", out_type, [m, n])],
                [numpy_helper.from_array(weight, "b")],
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            session = ort.InferenceSession(model.SerializeToString(), session_options(threads))
            feed = {"a": rng.integers(0, 100, (m, k)).astype(np.float32 if name == "fp32" else np.uint8)}
            seconds = float(np.median(time_calls(functools.partial(session.run, None, feed), 10, 0.0, warmup=3)))
            results[name] = max(results[name], 2 * m * k * n / seconds / 1e9)
    return results


def model_gop(config: dict[str, Any], tokens: int) -> float:
    """GOP of one encoder pass over `tokens` tokens: the weight GEMMs plus the attention products."""
    hidden, layers, inner = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    per_token = layers * (4 * hidden * hidden + 2 * hidden * inner)
    attention = layers * 2 * tokens * tokens * hidden
    return 2 * (per_token * tokens + attention) / 1e9


def torch_variant(
    checkpoint: Path, precision: str, threads: int, sentences: list[str], single: list[str], runs: int
) -> tuple[dict[str, Any], Callable[[str], Any]]:
    """The PyTorch pipeline's row, and the pipeline (kept for the side-by-side single sentences)."""
    import torch
    import transformers

    torch.set_num_threads(threads)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    if precision == "int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    pipe = transformers.pipeline(
        "text-classification", model=model, tokenizer=transformers.AutoTokenizer.from_pretrained(checkpoint)
    )
    ids = torch.full((1, 128), 1000, dtype=torch.int64)

    def forward_128() -> None:
        with torch.inference_mode():
            model(input_ids=ids)

    row = pipeline_timings(pipe, forward_128, sentences, single, runs)
    row["cold_start"] = script_cold_start(TORCH_COLD_START, str(checkpoint), precision, str(threads))
    return row, pipe


def optimum_python(venv: Path) -> Path:
    """Python of Optimum's venv, created on first use and brought to the pinned requirements (a no-op when
    they are met); this checkout of mbert-edge goes in without dependencies, for the shared timing code."""
    python = venv / "bin" / "python"
    if not python.exists():
        click.echo(f"creating Optimum's venv in {venv} (once; a few minutes) ...", err=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for requirements in OPTIMUM_REQUIREMENTS:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(HERE.parent)], check=True)
    return python


def optimum_variants(
    venv: Path, checkpoint: Path, sentences: list[str], single: list[str], runs: int, threads: int, work: Path
) -> dict[str, Any]:
    """optimum_peer.py's rows, steps (errors of the documented path included) and versions."""
    work.mkdir(parents=True, exist_ok=True)
    data = work / "sentences.json"
    data.write_text(json.dumps({"sentences": sentences, "single": single}), encoding="utf-8")
    done = subprocess.run(
        [
            str(optimum_python(venv)),
            str(HERE / "optimum_peer.py"),
            str(checkpoint),
            str(work),
            str(data),
            str(runs),
            str(threads),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise click.ClickException(f"Optimum's measurement failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def plain_padding_rate(model: Classifier, sentences: list[str]) -> float:
    """Sentences/s of the INT8 session fed batches of 32 in input order, padded to their longest member."""

    def run() -> None:
        for start in range(0, len(sentences), 32):
            encodings = model.tokenizer.encode_batch(sentences[start : start + 32])
            model.session.run(
                None, padded_inputs(encodings, max(map(len, encodings)), model.runner.input_names, model.runner.pad_id)
            )

    return len(sentences) / float(time_calls(run, 3, 0.0, warmup=1).min())


def ours(
    bundle: Path, precision: str, sentences: list[str], single: list[str], runs: int, baseline: bool = False
) -> dict[str, Any]:
    """Our bundle through `Classifier`, then its cold start. The session is gone before the cold start
    runs: one session alive at a time, so idle sessions' threads do not compete with the measured one."""
    row = _timings(Classifier(bundle, precision), sentences, single, runs, baseline)
    row["cold_start"] = bundle_cold_start(bundle, precision)
    return row


def _timings(model: Classifier, sentences: list[str], single: list[str], runs: int, baseline: bool) -> dict[str, Any]:
    """Single-sentence and 128-token latency and batch-32 throughput; `baseline` adds plain padding's."""
    one_by_one = itertools.cycle(single)
    row = {
        "end_to_end": summary(time_calls(lambda: model.predict(next(one_by_one)), runs, 0.0)),
        "s128": summary(graph_seconds(model, 128, max(5, runs // 4))),
        "sentences_per_s": len(sentences)
        / float(time_calls(lambda: model.predict(sentences, batch_size=32), 3, 0.0, warmup=1).min()),
    }
    if baseline:
        row["plain_padding_sentences_per_s"] = plain_padding_rate(model, sentences)
    return row


def interleaved(
    graphs: dict[str, Path], feeds: dict[int, dict[str, np.ndarray]], threads: int
) -> dict[str, dict[str, float]]:
    """Batch-1 p50 ms of each ONNX graph alone, per length, all sessions in this process, side by side."""
    sessions = {
        name: ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        for name, path in graphs.items()
    }
    return {
        str(length): side_by_side(
            {
                name: functools.partial(s.run, None, {i.name: feed[i.name] for i in s.get_inputs()})
                for name, s in sessions.items()
            }
        )
        for length, feed in feeds.items()
    }


def sentences_side_by_side(calls: dict[str, Callable[[str], Any]], texts: list[str]) -> dict[str, float]:
    """End-to-end p50 ms of each variant on the same real sentences, one per call, all variants in this process
    and timed in alternating rounds: the single-sentence ratios without the drift between separate runs."""
    return side_by_side(
        {
            name: functools.partial(lambda call, cycle: call(next(cycle)), call, itertools.cycle(texts))
            for name, call in calls.items()
        }
    )


def speedups(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Our INT8 single-sentence p50 against each peer's, as the issue's targets state them."""
    lines = []
    for ours_name in (n for n in rows if n.startswith("mbert-edge INT8")):
        mine = rows[ours_name]["end_to_end"]["p50_ms"]
        versus = [
            f"{peer} {rows[peer]['end_to_end']['p50_ms'] / mine:.2f}x"
            for peer in rows
            if not peer.startswith("mbert-edge")
        ]
        lines.append(f"{ours_name}, single sentence p50 speed-up over: {', '.join(versus)}.")
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    """Bars per variant: single-sentence p50 latency and batch-32 throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["variants"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.barh(names, [results["variants"][n]["end_to_end"]["p50_ms"] for n in names], color="tab:blue")
    left.set(xlabel="ms, one real sentence, p50 (lower is better)")
    right.barh(names, [results["variants"][n]["sentences_per_s"] for n in names], color="tab:green")
    right.set(xlabel="sentences/s at batch 32 (higher is better)")
    right.set_yticks(range(len(names)), [""] * len(names))
    model = results["model"]
    figure.suptitle(
        f"{model['layers']} layers x {model['hidden']} on {results['machine']['cpu']}, "
        f"{results['machine']['usable_cores']} cores"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--faithful", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--per-group", default=80, show_default=True, help="Sentences per language for throughput.")
@click.option("--runs", default=100, show_default=True, help="Single-sentence calls timed per variant.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--optimum-venv",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path.home() / ".cache" / "mbert-edge" / "optimum-venv",
    show_default=True,
    help="Optimum's venv (created when missing).",
)
@click.option("--skip-optimum", is_flag=True, help="Leave Optimum out (no venv needed).")
def main(
    checkpoint: Path,
    bundle: Path,
    faithful: Path | None,
    data: Path,
    per_group: int,
    runs: int,
    out: Path,
    optimum_venv: Path,
    skip_optimum: bool,
) -> None:
    threads = available_cpus()
    texts = load_textset(data).limited(per_group).texts
    sentences = [s for group in texts.values() for s in group]
    single = [group[i] for i in range(3) for group in texts.values() if len(group) > i]
    config = json.loads((checkpoint / "config.json").read_text())
    gop = model_gop(config, 128)
    roofline = gemm_roofline(threads)
    rows: dict[str, dict[str, Any]] = {}
    plain_model = Classifier(bundle, "int8")
    mean_length = sum(len(e.ids) for e in plain_model.tokenizer.encode_batch(sentences)) / len(sentences)
    feeds = {n: exact_length_feed(plain_model, n) for n in (round(mean_length), 128)}
    graphs = {"mbert-edge INT8 plain": plain_model.bundle.file(plain_model.runner.name)}
    if faithful:
        faithful_bundle = Bundle.open(faithful)
        graphs["mbert-edge INT8 faithful"] = faithful_bundle.file(faithful_bundle.models["int8"])
    del plain_model
    # Ours first: once PyTorch has run, its thread pool lingers in this process.
    variants = [("fp32", bundle, "mbert-edge FP32"), ("int8", bundle, "mbert-edge INT8 plain")]
    if faithful:
        variants.append(("int8", faithful, "mbert-edge INT8 faithful"))
    for precision, path, name in variants:
        click.echo(f"{name} ...", err=True)
        rows[name] = ours(path, precision, sentences, single, runs, baseline=name == "mbert-edge INT8 plain")
    optimum: dict[str, Any] = {"skipped": True}
    if not skip_optimum:
        click.echo("Optimum ...", err=True)
        with tempfile.TemporaryDirectory(prefix="optimum-") as work:  # its exported models: GBs for mBERT
            optimum = optimum_variants(optimum_venv, checkpoint.resolve(), sentences, single, runs, threads, Path(work))
            click.echo("graphs side by side ...", err=True)
            graph_latency = interleaved(
                {**graphs, "Optimum ORT INT8": Path(work) / "int8" / "model_quantized.onnx"}, feeds, threads
            )
        rows.update(optimum.pop("variants"))
    else:
        graph_latency = interleaved(graphs, feeds, threads)
    pipelines = {}
    for precision in ("fp32", "int8"):
        click.echo(f"PyTorch {precision} ...", err=True)
        name = f"transformers pipeline, PyTorch {precision.upper()}"
        rows[name], pipelines[name] = torch_variant(checkpoint, precision, threads, sentences, single, runs)
    click.echo("single sentences side by side ...", err=True)
    single_latency = sentences_side_by_side(
        {**{name: Classifier(path, precision).predict for precision, path, name in variants}, **pipelines}, single
    )
    tokens = round(mean_length * len(sentences))
    for name, row in rows.items():
        limit = roofline["fp32" if "FP32" in name else "int8"]
        row["roofline_share_s128"] = gop / (row["s128"]["p50_ms"] / 1e3) / limit
        # Throughput in GOP/s, counting each sentence at the corpus's mean length (padding is not work).
        row["roofline_share_batch32"] = row["sentences_per_s"] * model_gop(config, round(mean_length)) / limit
    results = {
        "machine": machine("torch", "transformers", "onnxruntime", "tokenizers", "mbert-edge"),
        "model": {
            "checkpoint": str(checkpoint),
            "layers": config["num_hidden_layers"],
            "hidden": config["hidden_size"],
            "vocab": config["vocab_size"],
            "gop_at_128_tokens": gop,
        },
        "data": {"sentences": len(sentences), "tokens": tokens, "languages": len(texts)},
        "roofline_gops": roofline,
        "variants": rows,
        "graphs_side_by_side_ms": graph_latency,
        "single_sentences_side_by_side_ms": single_latency,
        "optimum": optimum,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"{machine_line(results['machine'])}; GEMM roofline FP32 {roofline['fp32']:.0f} GOP/s, INT8 {roofline['int8']:.0f} GOP/s; model "
        f"{config['num_hidden_layers']} layers x {config['hidden_size']}, {gop:.1f} GOP at 128 tokens; "
        f"{len(sentences)} sentences ({tokens} tokens) in {len(texts)} languages.",
        "",
        "| variant | single sentence p50 ms | p90 ms | batch-1 128 tokens p50 ms | roofline share | "
        "batch 32 sentences/s | tokens/s | roofline share | cold start s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        rate = row["sentences_per_s"]
        lines.append(
            f"| {name} | {row['end_to_end']['p50_ms']:.1f} | {row['end_to_end']['p90_ms']:.1f} | "
            f"{row['s128']['p50_ms']:.1f} | {row['roofline_share_s128']:.0%} | {rate:.0f} | "
            f"{rate * mean_length:.0f} | {row['roofline_share_batch32']:.0%} | {row['cold_start']['seconds']:.2f} | "
            f"{row['cold_start']['peak_rss_mb']:.0f} |"
        )
    plain = rows["mbert-edge INT8 plain"]
    lines += ["", *speedups(rows)]
    names = list(graphs) + [n for n in next(iter(graph_latency.values())) if n not in graphs]
    lines += [
        "",
        "INT8 graphs alone, batch 1, one process, alternating rounds (p50 ms; robust to this machine's drift):",
        "",
        "| tokens | " + " | ".join(names) + " | each / plain |",
        "|---" * (len(names) + 2) + "|",
    ]
    for length, row in graph_latency.items():
        ratios = ", ".join(f"{n} {row[n] / row['mbert-edge INT8 plain']:.2f}x" for n in names[1:])
        lines.append(f"| {length} | " + " | ".join(f"{row[n]:.1f}" for n in names) + f" | {ratios} |")
    mine = single_latency["mbert-edge INT8 plain"]
    lines += [
        "",
        "Single real sentences end to end, the variants that share this process (Optimum has its own venv), "
        "alternating rounds (p50 ms):",
        "",
        "| variant | p50 ms | plain INT8's speed-up |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {ms:.1f} | {ms / mine:.2f}x |" for name, ms in single_latency.items()]
    if not skip_optimum:
        steps = optimum["steps"]
        lines += [
            "",
            f"Optimum {optimum['versions']['optimum-onnx']} (transformers {optimum['versions']['transformers']}): "
            f"O2 graph {steps['o2_operators']}; INT8 path: {steps['int8_path']}"
            + (
                f" (documented path failed: {steps['int8_documented_error']})"
                if "int8_documented_error" in steps
                else ""
            )
            + f"; INT8 graph {steps['int8_operators']}.",
        ]
    lines += [
        "",
        f"Bucketed batching vs plain padding (INT8, batch 32): {plain['sentences_per_s']:.0f} vs "
        f"{plain['plain_padding_sentences_per_s']:.0f} sentences/s "
        f"({plain['sentences_per_s'] / plain['plain_padding_sentences_per_s']:.2f}x).",
    ]
    (out / "peers.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot(results, out / "peers.png")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
