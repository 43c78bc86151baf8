"""Fill-mask: tiny masked-LM models of every architecture exported with the head on the mask tokens' rows alone,
against transformers' `fill-mask` pipeline and the PyTorch model's full logits."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from families import write_family_checkpoint

from mbert_edge import FillMask
from mbert_edge.bundle import Bundle

pytestmark = pytest.mark.slow  # exports a tiny masked LM per architecture

TEXTS = ["Der Zug hatte zwei {m} Verspätung.", "Le gâteau au {m} est délicieux.", "{m} 天気は晴れ。", "a {m} b {m} c"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mlm_checkpoint, mlm_bundle):
    """(checkpoint, bundle) of a tiny masked LM per architecture, exported once ("bert-wordpiece": M-BERT's kind)."""
    from mbert_edge.export import export_bundle

    made: dict[str, tuple[Path, Path]] = {"bert-wordpiece": (mlm_checkpoint, mlm_bundle)}

    def get(model_type: str) -> tuple[Path, Path]:
        if model_type not in made:
            root = tmp_path_factory.mktemp(f"{model_type}-mlm")
            checkpoint = write_family_checkpoint(root / "checkpoint", model_type, "fill-mask")
            made[model_type] = checkpoint, export_bundle(str(checkpoint), root / "bundle").path
        return made[model_type]

    return get


def pipeline_of(checkpoint: Path):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    tokenizer.pad_token = tokenizer.pad_token or "<pad>"  # the RoBERTa folder names no special tokens
    tokenizer.mask_token = tokenizer.mask_token or "<mask>"
    return transformers.pipeline("fill-mask", model=str(checkpoint), tokenizer=tokenizer, device="cpu")


def assert_same_fills(ours: list, theirs: list) -> None:
    """The same propositions (tokens, strings, sequences) and scores to 1e-5; near ties may swap places."""
    assert {r["token"]: r["score"] for r in ours} == pytest.approx({r["token"]: r["score"] for r in theirs}, abs=1e-5)
    assert {r["token"]: (r["token_str"], r["sequence"]) for r in ours} == {
        r["token"]: (r["token_str"], r["sequence"]) for r in theirs
    }
    assert all(a["score"] >= b["score"] - 1e-6 for a, b in itertools.pairwise(ours))


@pytest.mark.parametrize("model_type", ["bert-wordpiece", "bert", "distilbert", "roberta", "xlm-roberta"])
def test_fill_mask_agrees_with_the_pipeline(exported, model_type):
    checkpoint, bundle = exported(model_type)
    model = FillMask(bundle, precision="fp32")
    texts = [t.format(m=model.mask_token) for t in TEXTS]
    pipe = pipeline_of(checkpoint)
    for text in texts:
        ours, theirs = model.predict(text, top_k=4), pipe(text, top_k=4)
        if text.count(model.mask_token) == 1:
            assert_same_fills(ours, theirs)
        else:  # a list per mask
            assert len(ours) == len(theirs) == 2
            for mine, reference in zip(ours, theirs):
                assert_same_fills(mine, reference)
    targets = [model.tokenizer.id_to_token(i) for i in (7, 9, 11)]
    assert_same_fills(model.predict(texts[0], targets=targets), pipe(texts[0], targets=targets))
    for text, batched in zip(texts, model.predict(texts, top_k=4)):  # batched as one at a time
        alone = model.predict(text, top_k=4)
        for mine, reference in zip(*(r if isinstance(r[0], list) else [r] for r in (batched, alone))):
            assert_same_fills(mine, reference)


def test_the_graph_scores_only_the_masks(exported, tmp_path):
    """The graph's rows are the PyTorch model's full logits at the masked positions; the decoder stays tied to the
    word table (one copy); batched equals one at a time, and for faithful INT8 exactly; the gate counts top-5."""
    import torch
    import transformers
    from conftest import run_cli

    from mbert_edge.quantization import QuantizationConfig
    from mbert_edge.quantize.pipeline import quantize_bundle

    checkpoint, bundle = exported("bert")
    model = FillMask(bundle, precision="fp32")
    texts = [t.format(m=model.mask_token) for t in TEXTS]
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    torch_model = transformers.AutoModelForMaskedLM.from_pretrained(checkpoint, attn_implementation="eager").eval()
    for text in texts:
        batch = tokenizer(text, return_tensors="pt")
        with torch.inference_mode():
            full = torch_model(**batch).logits[0].numpy()
        rows = full[batch["input_ids"][0].numpy() == model.mask_id]
        (ours,) = model.runner.run(model.runner.windows([text], "head")[0])
        assert ours.shape == rows.shape and np.abs(ours - rows).max() < 1e-4

    graph = onnx.load(str(Path(bundle) / "model.onnx"), load_external_data=False)
    vocab, hidden = torch_model.config.vocab_size, torch_model.config.hidden_size
    tables = [i.name for i in graph.graph.initializer if sorted(i.dims) == sorted([vocab, hidden])]
    assert len(tables) == 1, tables  # the word table, read by the embedding and the decoder alike

    faithful = Path(shutil.copytree(bundle, tmp_path / "faithful"))
    report = quantize_bundle(faithful, QuantizationConfig.of("faithful", min_agreement=0.0))
    assert 0 <= report["overall"]["top5_overlap"] <= 1 and report["overall"]["decisions"] >= 60
    assert Bundle.open(faithful).manifest.labels is None
    int8_graph = onnx.load(str(faithful / "model.int8.onnx"), load_external_data=False)
    assert [i.name for i in int8_graph.graph.initializer if sorted(i.dims) == sorted([vocab, hidden])] == tables
    int8 = FillMask(faithful, precision="int8")
    together = int8.predict(texts[:3], top_k=3)
    assert together == [int8.predict(t, top_k=3) for t in texts[:3]]  # exactly
    dynamic = Path(shutil.copytree(bundle, tmp_path / "dynamic"))
    quantized = run_cli("quantize", str(dynamic), "--method", "dynamic", "--min-agreement", "0")
    assert quantized.returncode == 0 and "top-5 overlap" in quantized.stdout, quantized.stderr
    verified = run_cli("verify", str(dynamic))
    assert verified.returncode == 0 and "top-5 overlap" in verified.stdout, verified.stderr
    with pytest.raises(ValueError, match="has no <mask> token in its first 128 tokens"):
        model.predict("no mask here")


def test_fill_mask_on_the_command_line_the_server_and_in_batch(exported, tmp_path):
    """`predict`, `/fill-mask` (and `/predict`) and `batch` answer as `FillMask.predict`; a text without a mask token
    is a one-line error, a 422, or its row's error."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from conftest import run_cli
    from starlette.testclient import TestClient

    from mbert_edge import load
    from mbert_edge.serve.app import create_app
    from mbert_edge.serve.settings import ServerSettings

    _, bundle = exported("bert-wordpiece")
    model = load(bundle)
    assert isinstance(model, FillMask)
    texts = [t.format(m=model.mask_token) for t in TEXTS]
    targets = [model.tokenizer.id_to_token(i) for i in (7, 9, 11)]

    printed = run_cli(
        "predict", str(bundle), *texts[:2], "--top-k", "2", "--targets", targets[0], "--targets", targets[1]
    )
    assert printed.returncode == 0, printed.stderr
    assert [json.loads(line) for line in printed.stdout.splitlines()] == model.predict(
        texts[:2], top_k=2, targets=targets[:2]
    )
    refused = run_cli("predict", str(bundle), "no mask here")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "has no [MASK] token" in refused.stderr
    (tmp_path / "lines.txt").write_text("\n".join([texts[0]] * 18 + ["no mask", texts[1]]) + "\n", encoding="utf-8")
    streamed = run_cli("predict", str(bundle), "--input", str(tmp_path / "lines.txt"), "--batch-size", "1")
    assert streamed.returncode == 1 and len(streamed.stdout.splitlines()) == 16  # the chunks before it, 8 each
    assert "text 18 has no [MASK] token in its first 128 tokens" in streamed.stderr  # its place in the stream

    with TestClient(create_app(model, ServerSettings(bundle=str(bundle), max_input_tokens=2048))) as client:
        answered = client.post("/fill-mask", json={"inputs": texts, "top_k": 3, "targets": targets}).json()
        assert answered == json.loads(json.dumps(model.predict(texts, top_k=3, targets=targets)))
        assert client.post("/predict", json={"inputs": texts[0]}).json() == json.loads(
            json.dumps(model.predict(texts[0]))
        )
        missing = client.post("/fill-mask", json={"inputs": [texts[0], "no mask"]})
        assert missing.status_code == 422 and missing.json()["error"].startswith("inputs[1] has no mask token")
        assert "/fill-mask" in client.get("/openapi.json").json()["paths"]
        masks = " ".join([model.mask_token] * 10)  # 4 texts x 10 masks x 12 tokens: 480 tokens copied per top_k
        for top_k, status in ((21, 200), (22, 422), (10**20, 422)):  # the limit: 2,048 x 5 tokens
            bounded = client.post("/fill-mask", json={"inputs": [masks] * 4, "top_k": top_k})
            assert bounded.status_code == status, bounded.json() if status == 422 else bounded.status_code
        assert "(masks x top_k x tokens), over this server's --max-input-tokens x 5 (10,240)" in bounded.json()["error"]
        few = {"inputs": [masks] * 4, "top_k": 10**20, "targets": targets[:2]}  # at most 2 proposals a mask
        assert client.post("/fill-mask", json=few).status_code == 200

    rows = pa.table({"id": range(4), "text": [texts[0], "no mask", None, texts[3]]})
    pq.write_table(rows, tmp_path / "in.parquet")
    run = run_cli("batch", str(bundle), str(tmp_path / "in.parquet"), str(tmp_path / "out"), "--top-k", "2")
    assert run.returncode == 0, run.stderr
    out = pq.read_table(tmp_path / "out").to_pylist()
    assert [row["error"] for row in out] == [None, "no mask token in its first 128 tokens", "null text", None]
    expected = [model.predict(texts[0], top_k=2)], model.predict(texts[3], top_k=2)
    for row, want in zip((out[0], out[3]), expected):
        assert [[(f["token"], f["sequence"]) for f in mask] for mask in row["fills"]] == [
            [(f["token"], f["sequence"]) for f in mask] for mask in want
        ]
        assert [f["score"] for mask in row["fills"] for f in mask] == pytest.approx(
            [f["score"] for mask in want for f in mask], abs=1e-6
        )
