"""Optimum's documented ONNX path, timed like our runtime; run by peers.py inside Optimum's own venv
(optimum-onnx pins transformers < 4.58, which our export side does not use). Prints one JSON object.

    python optimum_peer.py CHECKPOINT WORKDIR SENTENCES_JSON RUNS THREADS

Steps, as Optimum documents them: `ORTModelForSequenceClassification.from_pretrained(export=True)`,
`ORTOptimizer` with `AutoOptimizationConfig.O2()`, `ORTQuantizer` with
`AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)` on the optimised model. When a step
fails its error is recorded and the nearest working path is taken (quantizing the unoptimised export).
"""

from __future__ import annotations

import collections
import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from mbert_edge.bench.measure import pipeline_timings, script_cold_start

COLD_START = """
import sys, time, json
start = time.perf_counter()
import onnxruntime, transformers
from optimum.onnxruntime import ORTModelForSequenceClassification
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = int(sys.argv[4])
model = ORTModelForSequenceClassification.from_pretrained(sys.argv[1], file_name=sys.argv[2], session_options=options)
pipe = transformers.pipeline("text-classification", model=model, tokenizer=transformers.AutoTokenizer.from_pretrained(sys.argv[3]))
pipe("Das Essen war großartig")
"""

FUSED = (
    "Attention",
    "SkipLayerNormalization",
    "EmbedLayerNormalization",
    "BiasGelu",
    "MatMulInteger",
    "DynamicQuantizeLinear",
    "DynamicQuantizeMatMul",
)


def fused_counts(path: Path) -> dict[str, int]:
    import onnx

    counts = collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    return {op: counts[op] for op in FUSED if counts[op]}


def build(checkpoint: str, work: Path) -> tuple[dict[str, tuple[Path, str]], dict[str, Any]]:
    """Export, O2, INT8 as documented; returns {variant: (folder, file)} and what happened at each step."""
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig
    from transformers import AutoTokenizer

    exported = ORTModelForSequenceClassification.from_pretrained(checkpoint, export=True)
    exported.save_pretrained(work / "export")
    AutoTokenizer.from_pretrained(checkpoint).save_pretrained(work / "export")
    ORTOptimizer.from_pretrained(exported).optimize(
        save_dir=work / "o2", optimization_config=AutoOptimizationConfig.O2()
    )
    config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
    steps: dict[str, Any] = {"o2_operators": fused_counts(work / "o2" / "model_optimized.onnx")}
    try:
        ORTQuantizer.from_pretrained(work / "o2", file_name="model_optimized.onnx").quantize(
            save_dir=work / "int8", quantization_config=config
        )
        steps["int8_path"] = "documented: O2 model -> avx512_vnni dynamic"
    except Exception as error:
        steps["int8_documented_error"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
        ORTQuantizer.from_pretrained(work / "export", file_name="model.onnx").quantize(
            save_dir=work / "int8", quantization_config=config
        )
        steps["int8_path"] = "nearest working: unoptimised export -> avx512_vnni dynamic (O2 skipped)"
    steps["int8_operators"] = fused_counts(work / "int8" / "model_quantized.onnx")
    return {"FP32": (work / "o2", "model_optimized.onnx"), "INT8": (work / "int8", "model_quantized.onnx")}, steps


def measure(
    folder: Path, file: str, tokenizer: Path, sentences: list[str], single: list[str], runs: int, threads: int
) -> dict[str, Any]:
    import onnxruntime
    import transformers
    from optimum.onnxruntime import ORTModelForSequenceClassification

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    model = ORTModelForSequenceClassification.from_pretrained(folder, file_name=file, session_options=options)
    pipe = transformers.pipeline(
        "text-classification", model=model, tokenizer=transformers.AutoTokenizer.from_pretrained(tokenizer)
    )
    ids = np.full((1, 128), 1000, dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    row = pipeline_timings(pipe, lambda: model.session.run(None, feed), sentences, single, runs)
    row["cold_start"] = script_cold_start(COLD_START, str(folder), file, str(tokenizer), str(threads))
    return row


def main(checkpoint: str, work: str, sentences_json: str, runs: str, threads: str) -> None:
    data = json.loads(Path(sentences_json).read_text(encoding="utf-8"))
    folder = Path(work)
    variants, steps = build(checkpoint, folder)
    rows = {
        f"Optimum ORT {name}": measure(
            path, file, folder / "export", data["sentences"], data["single"], int(runs), int(threads)
        )
        for name, (path, file) in variants.items()
    }
    versions = {
        p: version(p) for p in ("optimum", "optimum-onnx", "transformers", "torch", "onnxruntime", "tokenizers")
    }
    print(json.dumps({"variants": rows, "steps": steps, "versions": versions}))


if __name__ == "__main__":
    main(*sys.argv[1:])
