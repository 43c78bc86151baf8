"""The quantization settings' owner: values are checked when a config is made, presets are named constructors,
and the CLI's choices and per-method checks come from it."""

from __future__ import annotations

import dataclasses
import json

import click
import pytest

from mbert_edge.bundle import Quantization
from mbert_edge.cli.tooling import quantize
from mbert_edge.quantization import (
    DEFAULT_MIN_AGREEMENT,
    METHOD_SETTINGS,
    DynamicSettings,
    EmbeddingTable,
    FaithfulSettings,
    Method,
    Preset,
    QuantizationConfig,
    Rounding,
    WeightFormat,
)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "static"}, "method must be one of faithful, dynamic, got 'static'"),
        ({"preset": "avx512"}, "preset must be one of auto, avx512-vnni, avx-vnni, avx2, arm64"),
        ({"weight_format": "q4"}, "weight_format must be one of s8, s7, u8, p8"),
        ({"weight_rounding": "stochastic"}, "weight_rounding must be one of gptq, nearest"),
        ({"method": "dynamic", "embedding_table": "per-column"}, "embedding_table must be one of per-row, per-tensor"),
        ({"min_agreement": 1.5}, "min_agreement must be in [0, 1], got 1.5"),
        ({"smoothing": -0.1}, "smoothing must be in [0, 1]"),
        ({"min_cosine": 2.0}, "min_cosine must be in [-1, 1]"),
        ({"outlier_channels": -1}, "outlier_channels must be at least 0"),
        ({"method": "dynamic", "smoothing": 0.5}, "smoothing applies to method faithful only"),
        ({"method": "dynamic", "weight_format": "s8"}, "weight_format applies to method faithful only"),
        ({"per_channel": False}, "per_channel applies to method dynamic only"),
        ({"bits": 4}, "no setting bits"),
    ],
)
def test_a_bad_setting_is_refused_when_the_config_is_made(settings, message):
    with pytest.raises(ValueError) as refused:
        QuantizationConfig.of(**settings)
    assert message in str(refused.value)


def test_each_method_has_its_own_settings_class():
    assert QuantizationConfig().settings == FaithfulSettings() and QuantizationConfig.of("dynamic").dynamic.per_channel
    config = QuantizationConfig("dynamic", settings=DynamicSettings(embedding_table="per-tensor"))
    assert config.dynamic.embedding_table is EmbeddingTable.PER_TENSOR
    with pytest.raises(TypeError, match="a dynamic config has no faithful settings"):
        config.faithful  # noqa: B018
    with pytest.raises(ValueError, match="method faithful takes FaithfulSettings, got DynamicSettings"):
        QuantizationConfig(settings=DynamicSettings())
    with pytest.raises(ValueError, match="smoothing must be in"):
        FaithfulSettings(smoothing=2.0)
    flat = QuantizationConfig.of("faithful", smoothing=0.5).options()
    assert flat["smoothing"] == 0.5 and "per_channel" not in flat and "settings" not in flat


def test_presets_are_named_constructors_and_values_stay_strings():
    config = QuantizationConfig.avx2(method="dynamic", per_channel=False)
    assert config.preset == "avx2" and config.method is Method.DYNAMIC and not config.batch_invariant
    assert f"{config.method} {config.preset}" == "dynamic avx2" and str(config.dynamic.embedding_table) == "per-row"
    assert json.loads(json.dumps(config.options())) == {
        "method": "dynamic",
        "preset": "avx2",
        "per_channel": False,
        "embedding_table": "per-row",
        "data": None,
        "min_agreement": None,
        "min_cosine": 0.98,
    }
    made = {name: getattr(QuantizationConfig, name)().preset for name in ("avx512_vnni", "avx_vnni", "avx2", "arm64")}
    assert made == {"avx512_vnni": "avx512-vnni", "avx_vnni": "avx-vnni", "avx2": "avx2", "arm64": "arm64"}
    assert QuantizationConfig().agreement_threshold == DEFAULT_MIN_AGREEMENT["faithful"]
    assert QuantizationConfig(method="dynamic").agreement_threshold == DEFAULT_MIN_AGREEMENT["dynamic"]


def test_a_manifest_record_is_read_as_written():
    """A bundle quantized before a check existed still opens: its record is not re-judged."""
    record = {"method": "faithful", "preset": "avx2", "smoothing": 7, "passed": True, "gate": {"min_cosine": 0.98}}
    record |= {"per_channel": True, "report": {"overall": {}, "files": []}}  # a dynamic option, as older bundles wrote
    read = Quantization.from_json(record)
    assert read.config.faithful.smoothing == 7 and read.chosen == {} and "per_channel" not in read.to_json()


def test_the_cli_takes_its_choices_and_method_checks_from_the_owner():
    choices = {p.name: list(p.type.choices) for p in quantize.params if isinstance(p.type, click.Choice)}
    assert choices == {
        "method": Method.values(),
        "preset": Preset.values(),
        "embedding_table": EmbeddingTable.values(),
        "weight_format": WeightFormat.values(),
        "weight_rounding": Rounding.values(),
    }
    common = {f.name for f in dataclasses.fields(QuantizationConfig)} - {"settings"}
    own = {f.name for kind in METHOD_SETTINGS.values() for f in dataclasses.fields(kind)}
    assert {p.name for p in quantize.params} - {"bundle"} == common | own
