"""Length-bucketed batching: plans that respect their caps, and results identical to one-at-a-time."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from mbert_edge import Embedder, TokenClassifier
from mbert_edge.quantization import QuantizationConfig
from mbert_edge.quantize.pipeline import quantize_bundle
from mbert_edge.runtime.batching import BUCKETS, bucket_length, plan_batches
from mbert_edge.textdata import builtin_sample

SENTENCES = [s for group in builtin_sample().texts.values() for s in group]
MIXED = SENTENCES + [" ".join(SENTENCES[i : i + 4]) for i in range(0, 40, 4)] + ["", "ok"]


@pytest.mark.parametrize("batch_size, max_tokens", [(1, 512), (8, 512), (32, 1024), (64, 100_000)])
def test_plans_cover_every_item_within_caps(batch_size, max_tokens):
    rng = random.Random(batch_size)
    lengths = [rng.randint(3, 512) for _ in range(500)]
    plan = plan_batches(lengths, 512, batch_size, max_tokens)
    assert sorted(i for indices, _ in plan for i in indices) == list(range(500))
    for indices, width in plan:
        assert len(indices) <= batch_size and (len(indices) == 1 or width * len(indices) <= max_tokens)
        longest = max(lengths[i] for i in indices)
        assert longest <= width and (width in BUCKETS or width == 512 or (len(indices) == 1 and width == longest))
    assert [w for _, w in plan] == sorted(w for _, w in plan)


def test_a_lone_text_is_not_padded():
    assert plan_batches([13], 512, 32, 8192) == [([0], 13)]
    assert plan_batches([13, 14], 512, 32, 8192) == [([0, 1], 14)]
    assert plan_batches([13, 15], 512, 32, 8192) == [([0, 1], 16)]


def test_a_long_text_does_not_pad_the_short_ones():
    # greedy filling padded all 16 texts to 64 tokens (1,024); the plan runs the long one apart (150 + 60)
    assert plan_batches([10] * 7 + [60] + [10] * 8, 512, 32, 8192) == [([*range(7), *range(8, 16)], 10), ([7], 60)]
    # a run costs more than a little padding: texts of near lengths stay together
    assert plan_batches([8, 9, 10, 11, 12], 512, 32, 8192) == [([0, 1, 2, 3, 4], 12)]


def test_bucket_length():
    assert [bucket_length(n, 512) for n in (1, 8, 9, 33, 129, 512)] == [2, 8, 10, 36, 144, 512]
    # padding adds at most one token up to 32 tokens and one in eight beyond, from a bounded set of shapes
    assert all(n <= bucket_length(n, 512) <= n + max(1, n // 8) for n in range(1, 513)) and len(BUCKETS) <= 48
    assert bucket_length(100, 100) == 100 and bucket_length(600, 600) == 600


def test_fp32_batched_equals_one_at_a_time(encoder_bundle, token_bundle):
    embedder = Embedder(encoder_bundle, max_batch_tokens=256)
    alone = np.stack([embedder.encode(t) for t in MIXED])
    assert np.abs(embedder.encode(MIXED, batch_size=16) - alone).max() <= 1e-6
    ner = TokenClassifier(token_bundle, max_batch_tokens=256)
    alone_entities = [ner.predict(t, aggregation="none", ignore_labels=()) for t in MIXED]
    assert_same_tokens(ner.predict(MIXED, aggregation="none", ignore_labels=(), batch_size=16), alone_entities)


def assert_same_tokens(batched, alone):
    for a, b in zip(batched, alone, strict=True):
        assert [(t["entity"], t["start"], t["end"]) for t in a] == [(t["entity"], t["start"], t["end"]) for t in b]
        assert max((abs(x["score"] - y["score"]) for x, y in zip(a, b)), default=0.0) <= 1e-6


def test_faithful_int8_ner_batched_equals_one_at_a_time(tmp_path, token_bundle):
    bundle = Path(shutil.copytree(token_bundle, tmp_path / "b"))
    quantize_bundle(bundle, QuantizationConfig(method="faithful", min_agreement=0.0))
    ner = TokenClassifier(bundle)
    assert ner.precision == "int8"
    alone = [ner.predict(t, aggregation="none", ignore_labels=()) for t in MIXED]
    assert_same_tokens(ner.predict(MIXED, aggregation="none", ignore_labels=(), batch_size=8), alone)
