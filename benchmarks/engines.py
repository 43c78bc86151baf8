"""Our INT8 bundles against the other CPU engines, speed and fidelity in one table, measured in one run.

    python benchmarks/engines.py FP32_BUNDLE --dynamic BUNDLE --faithful BUNDLE [--checkpoint DIR] \
        --data ../shared/data/sentiment --calibration TEXTS --out DIR

Every variant is fed by the same runner (`mbert_edge.runtime.Runner`): the bundle's tokenizer, the same
length-bucketed batches, only the engine and graph differ. Variants: ours (ONNX Runtime: FP32, `dynamic`,
`faithful`); OpenVINO on the bundle's FP32 graph, compiled at f32 and at the CPU plugin's default precision
(bf16 where the CPU has avx512_bf16 or AMX); OpenVINO INT8 by NNCF static post-training quantization
(`nncf.quantize`, transformer model type, calibrated on `--calibration`); OpenVINO INT8 weights
(`nncf.compress_weights`, INT8_ASYM) with activations quantized per token at run time
(`DYNAMIC_QUANTIZATION_GROUP_SIZE` 32); CTranslate2 int8 (`--checkpoint`: converted from the transformers
checkpoint; classifier head applied in numpy on its pooled output).

Figures, all variants timed in alternating rounds in this process, 2 threads (the usable cores) each:
- batch-1 latency end to end (tokenization included) on held-out sentences cut to 14, 32 and 128 tokens;
- batch-32 throughput on `--sentences` held-out sentences;
- fidelity against our FP32 graph (parity-proven against PyTorch at export): agreement per group and its
  worst group (classifiers) or cosine mean / min (embedders), on every `--data` text;
- batch invariance: max |output alone - output in a batch of 16 mixed-length texts padded to the longest|;
- cold start (fresh process: import, load, first prediction) and its peak RSS.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
from openvino_session import InputInfo, OpenVINOSession

from mbert_edge.bench.measure import cold_start as bundle_cold_start
from mbert_edge.bench.measure import machine, script_cold_start, side_by_side, time_calls
from mbert_edge.bench.report import machine_line
from mbert_edge.bundle import Bundle
from mbert_edge.runtime.accuracy import compare
from mbert_edge.runtime.batching import padded_inputs
from mbert_edge.runtime.cpus import available_cpus
from mbert_edge.runtime.runner import Runner
from mbert_edge.textdata import TextSet, load_textset

LENGTHS = (14, 32, 128)
DYNAMIC_GROUP = 32
OPENVINO_COLD_START = """
import sys, time
start = time.perf_counter()
import numpy as np
from tokenizers import Tokenizer
import openvino as ov
tokenizer = Tokenizer.from_file(sys.argv[2])
config = {"INFERENCE_NUM_THREADS": int(sys.argv[3]), "PERFORMANCE_HINT": "LATENCY", **eval(sys.argv[4])}
compiled = ov.Core().compile_model(sys.argv[1], "CPU", config)
ids = np.array([tokenizer.encode("Das Essen war großartig").ids], dtype=np.int64)
feed = {p.get_any_name(): (ids if p.get_any_name() == "input_ids" else np.ones_like(ids) if "mask" in p.get_any_name()
        else np.zeros_like(ids)) for p in compiled.inputs}
compiled.create_infer_request().infer(feed)
"""


class CTranslate2Session:
    """CTranslate2's BERT encoder behind the runner's two session calls; the classification head (one Linear
    on the pooled output, as `BertForSequenceClassification` has it) runs in numpy."""

    def __init__(self, folder: Path, checkpoint: Path, threads: int, input_names: list[str]) -> None:
        import ctranslate2
        from safetensors.numpy import load_file

        self.encoder = ctranslate2.Encoder(str(folder), device="cpu", intra_threads=threads, compute_type="int8")
        weights = load_file(str(checkpoint / "model.safetensors"))
        self.head = weights["classifier.weight"].T, weights["classifier.bias"]
        self.inputs = [InputInfo(name) for name in input_names]

    def get_inputs(self) -> list[InputInfo]:
        return self.inputs

    def run(self, output_names: None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        lengths = feed["attention_mask"].sum(1)
        ids = [row[:n].tolist() for row, n in zip(feed["input_ids"], lengths)]
        types = (
            [row[:n].tolist() for row, n in zip(feed["token_type_ids"], lengths)] if "token_type_ids" in feed else None
        )
        pooled = np.array(self.encoder.forward_batch(ids, token_type_ids=types).pooler_output)
        return [pooled @ self.head[0] + self.head[1]]


def openvino_models(fp32_onnx: Path, calibration: Runner, texts: list[str], work: Path) -> dict[str, Path]:
    """The OpenVINO IR files of each OpenVINO variant, made once into `work` (NNCF takes minutes on mBERT)."""
    import nncf
    import openvino as ov

    work.mkdir(parents=True, exist_ok=True)
    paths = {"fp32": work / "fp32.xml", "static": work / "static_int8.xml", "weights": work / "int8_weights.xml"}
    if not paths["fp32"].exists():
        ov.save_model(ov.convert_model(fp32_onnx), paths["fp32"], compress_to_fp16=False)
    if not paths["static"].exists():
        feeds = [feed for _, feed in calibration.batches(calibration.first_windows(texts), 1)]
        quantized = nncf.quantize(
            ov.convert_model(fp32_onnx),
            nncf.Dataset(feeds),
            subset_size=len(feeds),
            model_type=nncf.ModelType.TRANSFORMER,
        )
        ov.save_model(quantized, paths["static"], compress_to_fp16=False)
    if not paths["weights"].exists():
        compressed = nncf.compress_weights(ov.convert_model(fp32_onnx), mode=nncf.CompressWeightsMode.INT8_ASYM)
        ov.save_model(compressed, paths["weights"], compress_to_fp16=False)
    return paths


def ctranslate2_model(checkpoint: Path, work: Path) -> Path:
    """The checkpoint converted by CTranslate2 with int8 weights (made once into `work`)."""
    import ctranslate2

    folder = work / "ctranslate2-int8"
    if not folder.exists():
        # CTranslate2 4.8 reads `position_embedding_type`, which transformers 5 no longer writes: a linked copy
        # of the checkpoint whose config names it.
        source = work / "ctranslate2-source"
        source.mkdir(parents=True, exist_ok=True)
        for file in checkpoint.iterdir():
            if file.name != "config.json" and not (source / file.name).exists():
                (source / file.name).symlink_to(file.resolve())
        config = json.loads((checkpoint / "config.json").read_text())
        (source / "config.json").write_text(json.dumps({"position_embedding_type": "absolute", **config}))
        ctranslate2.converters.TransformersConverter(str(source)).convert(str(folder), quantization="int8")
    return folder


def cut_texts(runner: Runner, sentences: list[str], length: int, count: int = 24) -> list[str]:
    """Held-out text that tokenizes to exactly `length` tokens: consecutive sentences joined, cut at a token."""
    content = length - runner.tokenizer.num_special_tokens_to_add(False)
    texts, start = [], 0
    while len(texts) < count and start < len(sentences):
        joined, end = sentences[start], start + 1
        while len(runner.tokenizer.encode(joined, add_special_tokens=False).ids) < content and end < len(sentences):
            joined, end = f"{joined} {sentences[end]}", end + 1
        offsets = runner.tokenizer.encode(joined, add_special_tokens=False).offsets
        if len(offsets) >= content:
            cut = joined[: offsets[content - 1][1]]
            if len(runner.tokenizer.encode(cut).ids) == length:
                texts.append(cut)
        start = end
    return texts


def predict(runner: Runner, texts: list[str], batch_size: int) -> list[np.ndarray]:
    """What a task class does per call, minus the result formatting: tokenize, batch, run."""
    return runner.run(runner.first_windows(texts), batch_size)


def batch_invariance(runner: Runner, texts: list[str], size: int = 16) -> float:
    """Max |output alone - output in a batch of `size` mixed-length texts padded to the longest|."""
    encodings = runner.first_windows(texts)
    worst = 0.0
    for first in range(0, len(encodings) - size + 1, size):
        group = encodings[first : first + size]
        (mixed,) = runner.session.run(
            None, padded_inputs(group, max(map(len, group)), runner.input_names, runner.pad_id)
        )[:1]
        for row, encoding in zip(mixed, group):
            (alone,) = runner.session.run(
                None, padded_inputs([encoding], len(encoding), runner.input_names, runner.pad_id)
            )[:1]
            worst = max(worst, float(np.abs(alone[0] - row).max()))
    return worst


def fidelity(
    task: str, reference: Runner, candidate: Runner, textset: TextSet, reference_outputs: dict[str, list[np.ndarray]]
) -> dict[str, Any]:
    overall = compare(task, reference, candidate, textset, reference_outputs=reference_outputs)["overall"]
    keys = ("mean_cosine", "min_cosine") if task == "feature-extraction" else ("agreement", "worst_agreement")
    return {**{k: overall[k] for k in keys}, "worst_group": overall["worst_group"]}


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--dynamic",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The same model quantized with --method dynamic.",
)
@click.option(
    "--faithful",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The same model quantized with --method faithful (the default).",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The transformers checkpoint, for CTranslate2 (left out without it).",
)
@click.option(
    "--data",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Held-out texts: fidelity on all of them; latency and throughput sentences from them.",
)
@click.option(
    "--calibration",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Texts NNCF calibrates static INT8 on (not in --data).",
)
@click.option("--sentences", default=1000, show_default=True, help="Held-out sentences for batch-32 throughput.")
@click.option("--rounds", default=5, show_default=True, help="Alternating rounds of the latency timings.")
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the OpenVINO and CTranslate2 models are made (reused when present) [default: OUT/models].",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(
    bundle: Path,
    dynamic: Path,
    faithful: Path,
    checkpoint: Path | None,
    data: Path,
    calibration: Path,
    sentences: int,
    rounds: int,
    work: Path | None,
    out: Path,
) -> None:
    threads = available_cpus()
    fp32 = Bundle.open(bundle)
    task = fp32.task
    reference = Runner.open(fp32, "fp32", intra_op_threads=threads)
    held_out = [t for group in load_textset(data).texts.values() for t in group]
    step = max(1, len(held_out) // sentences)
    throughput_texts = held_out[::step][:sentences]
    calibration_texts = [t for group in load_textset(calibration).texts.values() for t in group]
    work = work or out / "models"
    click.echo("making the OpenVINO models (once) ...", err=True)
    ir = openvino_models(fp32.file(fp32.models["fp32"]), reference, calibration_texts, work)
    runners: dict[str, Runner] = {
        "ours FP32": reference,
        "ours INT8 dynamic": Runner.open(Bundle.open(dynamic), "int8", intra_op_threads=threads),
        "ours INT8 faithful (default)": Runner.open(Bundle.open(faithful), "int8", intra_op_threads=threads),
    }
    cold_configs = {
        "OpenVINO FP32 (f32)": (ir["fp32"], {"INFERENCE_PRECISION_HINT": "f32"}),
        "OpenVINO FP32 (CPU default precision)": (ir["fp32"], {}),
        "OpenVINO INT8 static (NNCF PTQ)": (ir["static"], {"INFERENCE_PRECISION_HINT": "f32"}),
        "OpenVINO INT8 weights + per-token activations": (
            ir["weights"],
            {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": DYNAMIC_GROUP},
        ),
    }
    precisions = {}
    for name, (path, config) in cold_configs.items():
        precision = config.get("INFERENCE_PRECISION_HINT")
        session = OpenVINOSession(
            path, threads, precision, {k: v for k, v in config.items() if k != "INFERENCE_PRECISION_HINT"}
        )
        precisions[name] = session.inference_precision
        runners[name] = _runner_over(reference, session, name)
    if checkpoint is not None and task == "sequence-classification":
        click.echo("converting with CTranslate2 ...", err=True)
        session = CTranslate2Session(ctranslate2_model(checkpoint, work), checkpoint, threads, reference.input_names)
        runners["CTranslate2 int8"] = _runner_over(reference, session, "CTranslate2 int8")

    click.echo("latency by length ...", err=True)
    latency = {}
    for length in LENGTHS:
        texts = cut_texts(reference, held_out, length)
        calls = {name: _cycling(functools.partial(predict, runner), texts) for name, runner in runners.items()}
        latency[str(length)] = side_by_side(calls, rounds)
    click.echo("batch-32 throughput ...", err=True)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(3):
        for name, runner in runners.items():
            seconds = float(
                time_calls(functools.partial(predict, runner, throughput_texts, 32), 1, 0.0, warmup=1).min()
            )
            rates[name].append(len(throughput_texts) / seconds)
    click.echo("fidelity and batch invariance ...", err=True)
    mixed = held_out[:: max(1, len(held_out) // 64)][:64]
    textset = load_textset(data)
    reference_outputs = {name: reference.head_outputs(texts) for name, texts in textset.texts.items()}
    rows: dict[str, dict[str, Any]] = {}
    for name, runner in runners.items():
        rows[name] = {
            "latency_ms": {n: latency[n][name] for n in latency},
            "sentences_per_s": float(np.median(rates[name])),
            "batch_invariance": batch_invariance(runner, mixed),
        }
        if runner is not reference:
            rows[name]["fidelity"] = fidelity(task, reference, runner, textset, reference_outputs)
    click.echo("cold starts ...", err=True)
    for name, path in (
        ("ours FP32", bundle),
        ("ours INT8 dynamic", dynamic),
        ("ours INT8 faithful (default)", faithful),
    ):
        rows[name]["cold_start"] = bundle_cold_start(path, "fp32" if name == "ours FP32" else "int8")
    for name, (path, config) in cold_configs.items():
        rows[name]["cold_start"] = _median_cold_start(
            OPENVINO_COLD_START, str(path), str(fp32.file("tokenizer.json")), str(threads), repr(config)
        )
    results = {
        "machine": machine("onnxruntime", "openvino", "nncf", "ctranslate2", "mbert-edge"),
        "bundle": str(bundle),
        "task": task,
        "data": str(data),
        "throughput_sentences": len(throughput_texts),
        "openvino_precision": precisions,
        "variants": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "engines.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    table = markdown(results)
    (out / "engines.md").write_text(table + "\n", encoding="utf-8")
    click.echo(table)


def markdown(results: dict[str, Any]) -> str:
    embeddings = results["task"] == "feature-extraction"
    fidelity_head = "cosine mean / min" if embeddings else "agreement (worst group)"
    lines = [
        machine_line(results["machine"])
        + f"; OpenVINO default precision here: {results['openvino_precision']['OpenVINO FP32 (CPU default precision)']}.",
        "",
        f"| variant | ms at {' / '.join(map(str, LENGTHS))} tokens (batch 1) | sentences/s (batch 32) | "
        f"{fidelity_head} | batch invariance | cold start s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in results["variants"].items():
        ms = " / ".join(f"{row['latency_ms'][str(n)]:.1f}" for n in LENGTHS)
        fid = row.get("fidelity")
        if fid is None:
            shown = "reference"
        elif embeddings:
            shown = f"{fid['mean_cosine']:.5f} / {fid['min_cosine']:.4f}"
        else:
            shown = f"{fid['agreement']:.4f} ({fid['worst_group']} {fid['worst_agreement']:.3f})"
        cold = row.get("cold_start")
        started = f"{cold['seconds']:.2f} | {cold['peak_rss_mb']:.0f}" if cold else "not measured | not measured"
        lines.append(
            f"| {name} | {ms} | {row['sentences_per_s']:.0f} | {shown} | {row['batch_invariance']:.1e} | {started} |"
        )
    return "\n".join(lines)


def _runner_over(reference: Runner, session: Any, name: str) -> Runner:
    return Runner(
        session,
        reference.tokenizer,
        reference.max_length,
        reference.pad_id,
        name,
        stride=reference.stride,
        max_batch_tokens=reference.max_batch_tokens,
    )


def _cycling(call: Callable[[list[str], int], Any], texts: list[str]) -> Callable[[], Any]:
    position = iter(range(sys.maxsize))
    return lambda: call([texts[next(position) % len(texts)]], 1)


def _median_cold_start(script: str, *args: str, runs: int = 3) -> dict[str, float]:
    samples = [script_cold_start(script, *args) for _ in range(runs)]
    return {
        "seconds": float(np.median([s["seconds"] for s in samples])),
        "peak_rss_mb": float(np.median([s["peak_rss_mb"] for s in samples])),
    }


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
