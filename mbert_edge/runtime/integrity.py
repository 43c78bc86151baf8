"""Load-time checks that the parts of a bundle belong together: the tokenizer, the graph and the manifest.
A mismatch would otherwise surface as wrong answers or an obscure ONNX Runtime error on some later input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from ..bundle import MANIFEST_NAME, Manifest
from ..errors import BundleError
from .batching import graph_feed

FIX = "re-export the bundle with `mbert-edge export`"


def check_tokenizer(path: Path, manifest: Manifest) -> Tokenizer:
    """The bundle's tokenizer, refused when it is unreadable or its vocabulary does not fit the model."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for malformed files
        raise BundleError(f"{path} is not a readable tokenizer.json ({exc}); {FIX}") from exc
    size = tokenizer.get_vocab_size()
    if size != manifest.vocab_size or size > manifest.embedding_rows:
        raise BundleError(
            f"{path} has {size} tokens but {MANIFEST_NAME} records vocab_size {manifest.vocab_size} and "
            f"{manifest.embedding_rows} embedding rows: the tokenizer is not the model's; {FIX}"
        )
    return tokenizer


def open_session(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    """An ONNX Runtime session for `path`. ONNX Runtime itself refuses external-data paths that leave the
    model's folder (absolute or `..`); that and any corrupt file become one BundleError."""
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types, all from Exception
        reason = str(exc).splitlines()[0][:300]
        if "External data path" in reason:
            raise BundleError(
                f"{path} refers to weights outside the bundle folder, which is refused ({reason}); "
                f"use a bundle whose files all live in its folder"
            ) from exc
        raise BundleError(
            f"{path} could not be loaded by ONNX Runtime ({reason}): the file is corrupt or not an ONNX model; {FIX}"
        ) from exc


def framed_ids(manifest: Manifest, ids: list[int]) -> np.ndarray:
    """One input row: `ids` between the bundle's [CLS] and [SEP] tokens (shape [1, len(ids) + 2])."""
    specials = manifest.special_tokens
    return np.array([[specials["cls"].id, *ids, specials["sep"].id]], dtype=np.int64)


def check_graph(session: ort.InferenceSession, path: Path, manifest: Manifest) -> None:
    """The graph's inputs and outputs are the manifest's, and its embedding table holds the tokenizer's
    highest id (checked by running one three-token input through it)."""
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != manifest.inputs or outputs[:1] != manifest.outputs[:1]:
        raise BundleError(
            f"{path} takes {inputs} and gives {outputs}, but {MANIFEST_NAME} says {manifest.inputs} and "
            f"{manifest.outputs}: the model is not the bundle's; {FIX}"
        )
    highest = manifest.vocab_size - 1
    try:
        session.run(None, graph_feed(inputs, framed_ids(manifest, [highest])))
    except Exception as exc:
        reason = str(exc).splitlines()[0][:300]
        raise BundleError(
            f"{path} fails on the tokenizer's highest token id {highest} ({reason}): its "
            f"embedding table is smaller than the vocabulary; {FIX}"
        ) from exc
