"""Embedder against PyTorch mean pooling, and `load` picking the class for the bundle's task."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import torch_forward

import mbert_edge
from mbert_edge import Classifier, Embedder
from mbert_edge.textdata import builtin_sample

SENTENCES = [s for group in builtin_sample().texts.values() for s in group]


def torch_embeddings(checkpoint, texts):
    """Masked mean pooling + L2 norm over BertModel's last hidden state (sentence-transformers' recipe)."""
    import torch

    output, batch = torch_forward(checkpoint, "BertModel", texts)
    hidden = output.last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


def test_embedder_agrees_with_pytorch(encoder_bundle, encoder_checkpoint):
    embedder = Embedder(encoder_bundle)
    vectors = embedder.encode(SENTENCES, batch_size=8)
    assert vectors.dtype == np.float32 and vectors.shape == (len(SENTENCES), 32)
    assert np.abs(vectors - torch_embeddings(encoder_checkpoint, SENTENCES)).max() <= 1e-4
    assert embedder.encode("Hallo").shape == (32,)
    assert embedder.encode([]).shape == (0, 32)
    with pytest.raises(TypeError, match=r"^normalize must be a bool, got str$"):  # "no" is truthy
        embedder.encode("Hallo", normalize="no")


def test_load_picks_the_class(seqcls_bundle, encoder_bundle):
    assert type(mbert_edge.load(seqcls_bundle)) is Classifier
    assert type(mbert_edge.load(encoder_bundle, precision="fp32")) is Embedder
