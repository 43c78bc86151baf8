"""The faithful method: calibrate on real text, choose FP32 fallbacks if asked, rewrite the graph per token
(rewrite.py), so each text's INT8 result is the same alone or in any batch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from mbert_edge.progress import Progress
from mbert_edge.quantization import QuantizationConfig
from mbert_edge.runtime import Runner
from mbert_edge.textdata import TextSet

from .presets import faithful_weight_format


def quantize_faithful_int8(
    fp32: Path,
    target: Path,
    config: QuantizationConfig,
    task: str,
    reference: Runner,
    calibration: TextSet,
    progress: Progress,
) -> tuple[QuantizationConfig, dict[str, Any]]:
    """Per-token INT8 of the fused FP32 graph `fp32` into `target`, calibrated on `calibration` (GPTQ weight
    rounding, FP32 outlier channels, smoothing), with the fewest FP32 fallbacks that reach
    the `fallback_target` agreement on it. `config.preset` is resolved; returns the config as carried out
    and what the method chose."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    from .calibration import layer_statistics, smoothing_factors
    from .fallback import choose_fallback
    from .graph import at_opset, embedding_layers, linear_layers
    from .rewrite import OPSET, rewrite

    # The graph converted without its weights (ONNX's converter takes the model as one protobuf message, at most
    # 2 GiB: xlm-roberta-large is over it; and the mBERT shape converts in 0.04 s instead of 21), once, not in each
    # of the fallback search's rewrites; the weights are loaded after calibration, which reads them from their file.
    model = at_opset(onnx.load(str(fp32), load_external_data=False), OPSET)
    settings = replace(
        config.faithful, weight_format=config.faithful.weight_format or faithful_weight_format(config.preset)
    )
    texts = [t for group in calibration.texts.values() for t in group]
    with progress.step(f"calibrating on {len(texts)} texts"):
        stats = layer_statistics(model, fp32.parent, reference, texts)
    load_external_data_for_model(model, str(fp32.parent))
    options: dict[str, Any] = {
        "weight_format": settings.weight_format,
        "stats": stats,
        "outlier_channels": settings.outlier_channels,
        "weight_rounding": settings.weight_rounding,
        "smoothing": smoothing_factors(model, stats, settings.smoothing) if settings.smoothing else None,
    }
    fp32_layers: list[str] = []
    sensitivity: dict[str, float] = {}
    if settings.fallback_target is not None:
        count = len(linear_layers(model)) + len(embedding_layers(model))
        with progress.bar("ranking layer sensitivity", count) as advance:
            fp32_layers, sensitivity = choose_fallback(
                model, options, task, reference, TextSet({"calibration": texts}), settings.fallback_target, advance
            )
    with progress.bar(
        f"rewriting per token ({settings.weight_rounding} weight rounding)", len(linear_layers(model))
    ) as advance:
        rewritten = rewrite(model, fp32_layers=set(fp32_layers), advance=advance, **options)
    with progress.step("saving the rewritten graph"):
        onnx.save(rewritten, str(target))
    return replace(config, settings=settings), {
        "reduce_range": settings.weight_format == "s7",
        "weight_type": "int8",
        "activation_type": "uint8, one scale per token",
        "calibration_texts": len(texts),
        "fp32_layers": fp32_layers,
        "sensitivity": sensitivity,
    }
