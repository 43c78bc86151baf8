"""Every supported architecture (DistilBERT, RoBERTa, XLM-R; BERT is everywhere else) through every step:
export with `--task auto` -> fusion contract -> parity -> quantize (both methods) -> runtime, for every
task, on tiny random models with the tokenizer kind each ships with (WordPiece, byte-level BPE, Unigram)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import quick_bench, run_cli
from families import write_family_checkpoint
from test_token_classifier import TEXTS as NER_TEXTS
from test_token_classifier import assert_same_entities, pipeline_entities
from tokenizers import Tokenizer

from mbert_edge import Classifier, Embedder, TokenClassifier
from mbert_edge.bundle import Bundle
from mbert_edge.tasks import AGGREGATIONS, TASKS
from mbert_edge.textdata import builtin_sample

FAMILIES = ["distilbert", "roberta", "xlm-roberta"]
CLASSES = {
    "sequence-classification": Classifier,
    "token-classification": TokenClassifier,
    "feature-extraction": Embedder,
}
TEXTS = [s for group in builtin_sample().texts.values() for s in group[:1]] + ["Zürich 🙂 und 東京", "a"]
SPECIALS = {
    "distilbert": ("[CLS]", "[SEP]", "[PAD]"),
    "roberta": ("<s>", "</s>", "<pad>"),
    "xlm-roberta": ("<s>", "</s>", "<pad>"),
    "bert": ("<s>", "</s>", "<pad>"),
}
# Every architecture with every task (fill-mask's own tests: test_fill_mask.py), and BERT with XLM-R's Unigram
# tokenizer as a sentence encoder.
CASES = [(family, task) for family in FAMILIES for task in TASKS if task in CLASSES] + [("bert", "feature-extraction")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint, bundle) per (model_type, task), built and exported once with `--task auto`."""
    from mbert_edge.export import export_bundle

    made: dict[tuple[str, str], tuple[Path, Path]] = {}

    def get(model_type: str, task: str) -> tuple[Path, Path]:
        if (model_type, task) not in made:
            root = tmp_path_factory.mktemp(f"{model_type}-{task}")
            checkpoint = write_family_checkpoint(root / "checkpoint", model_type, task)
            made[model_type, task] = checkpoint, export_bundle(str(checkpoint), root / "bundle").path
        return made[model_type, task]

    return get


def torch_outputs(checkpoint: Path, task: str, texts: list[str]) -> tuple[np.ndarray, list[list[int]]]:
    """transformers' own tokenizer and model on a padded batch: (outputs at real tokens / pooled, token ids)."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    tokenizer.pad_token = tokenizer.pad_token or "<pad>"  # the RoBERTa folder names no special tokens
    model = (
        transformers.AutoModel.from_pretrained(checkpoint, attn_implementation="eager")
        if task == "feature-extraction"
        else getattr(
            transformers, f"AutoModelFor{'Sequence' if task == 'sequence-classification' else 'Token'}Classification"
        ).from_pretrained(checkpoint, attn_implementation="eager")
    )
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        output = model.eval()(**batch)
    mask = batch["attention_mask"].bool()
    if task == "feature-extraction":
        hidden = output.last_hidden_state * mask.unsqueeze(-1)
        return (hidden.sum(1) / mask.sum(1, keepdim=True)).numpy(), []
    ids = [row[m].tolist() for row, m in zip(batch["input_ids"], mask)]
    if task == "token-classification":
        return np.concatenate([row[m].numpy() for row, m in zip(output.logits, mask)]), ids
    return output.logits.numpy(), ids


@pytest.mark.slow
@pytest.mark.parametrize("model_type, task", CASES)
def test_export_quantize_and_run(exported, tmp_path, capfd, model_type, task):
    """In this process (the commands' own tests start them): quantizing is what differs by architecture."""
    from mbert_edge.quantization import QuantizationConfig
    from mbert_edge.quantize.pipeline import quantize_bundle

    checkpoint, bundle = exported(model_type, task)
    manifest = Bundle.open(bundle).manifest
    assert manifest.task == task  # --task auto read `architectures`
    # DistilBERT and the RoBERTa family take no token_type_ids; BERT does with two types
    assert manifest.inputs == ["input_ids", "attention_mask"] + (["token_type_ids"] if model_type == "bert" else [])
    assert manifest.optimization.contract_holds
    assert {k: v for k, v in manifest.optimization.fused_operators.items() if k != "nodes"} == {
        "Attention": 2,
        "SkipLayerNormalization": 4,
        "EmbedLayerNormalization": 1,
        "Gelu": 2,
    }
    assert manifest.export.parity.max_abs_diff <= 1e-4 and manifest.optimization.parity.max_abs_diff <= 1e-4
    cls, sep, pad = SPECIALS[model_type]
    assert (
        manifest.special_tokens["cls"].token,
        manifest.special_tokens["sep"].token,
        manifest.special_tokens["pad"].token,
    ) == (cls, sep, pad)
    assert manifest.max_length == 128  # RoBERTa family: 130 positions - padding index 1 - 1; BERT: its tokenizer's

    # The runtime (FP32) against transformers' tokenizer and model, on a padded batch.
    fp32 = CLASSES[task](bundle, precision="fp32")
    expected, ids = torch_outputs(checkpoint, task, TEXTS)
    if task == "feature-extraction":
        got = fp32.encode(TEXTS, normalize=False)
    else:
        windows = fp32.runner.windows(TEXTS, "head")
        assert [w[0].ids for w in windows] == ids
        got = fp32.runner.head_outputs(TEXTS)
        got = np.concatenate(got) if task == "token-classification" else np.stack(got)
    np.testing.assert_allclose(got, expected, atol=1e-4)

    for method in ("faithful", "dynamic"):
        copy = Path(shutil.copytree(bundle, tmp_path / method))
        capfd.readouterr()
        quantize_bundle(copy, QuantizationConfig.of(method, min_agreement=0.0, min_cosine=0.0))
        record = Bundle.open(copy).manifest.quantization
        assert record is not None and record.passed and record.config.method == method
        assert "pre-processing" not in capfd.readouterr().err  # ONNX Runtime's advice for image models, not for these
        int8 = CLASSES[task](copy)
        assert int8.precision == "int8"
        if task == "feature-extraction":
            cosines = (int8.encode(TEXTS) * fp32.encode(TEXTS)).sum(1)
            assert cosines.min() > 0.9
            batched, alone = int8.encode(TEXTS), np.stack([int8.encode(t) for t in TEXTS])
        else:
            batched = np.concatenate([np.atleast_2d(x) for x in int8.runner.head_outputs(TEXTS)])
            alone = np.concatenate([np.atleast_2d(x) for t in TEXTS for x in int8.runner.head_outputs([t])])
            assert np.abs(batched - np.atleast_2d(got).reshape(batched.shape)).max() < 0.5
        if method == "faithful":  # batch-invariant on every architecture
            np.testing.assert_allclose(batched, alone, atol=1e-6)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("model_type", ["xlm-roberta", "roberta"])
def test_ner_on_sentencepiece_and_bpe_agrees_with_hf_pipeline(exported, model_type, aggregation):
    """Word grouping (SentencePiece's ▁ word starts, byte-level BPE's Ġ) and character offsets as the Hugging
    Face pipeline gives them, in every script of the sample."""
    checkpoint, bundle = exported(model_type, "token-classification")
    actual = TokenClassifier(bundle, precision="fp32").predict(NER_TEXTS, aggregation=aggregation, batch_size=5)
    expected = pipeline_entities(checkpoint, NER_TEXTS, aggregation)
    for want, got in zip(expected, actual):
        assert_same_entities(want, got)
    assert sum(map(len, actual)) > len(NER_TEXTS)  # the random head does find entities to compare


def test_long_text_windows_keep_the_tokenizers_own_frame(exported):
    """A long text is read in windows, each framed by the tokenizer's <s> ... </s> and within the max length."""
    _, bundle = exported("xlm-roberta", "sequence-classification")
    model = Classifier(bundle, precision="fp32")
    text = " ".join(builtin_sample().texts["deu"] * 40)
    windows = model.runner.windows([text], "window")[0]
    assert len(windows) > 2
    assert all(w.ids[0] == 0 and w.ids[-1] == 2 and len(w.ids) <= model.max_length for w in windows)
    assert np.isfinite(model.logits(text, truncation="window")).all()


@pytest.mark.parametrize("model_type", ["xlm-roberta", "roberta"])
def test_long_text_ner_merges_windows_into_the_whole_texts_tokens(exported, model_type):
    """A long text's windows merge into exactly the tokens of the text tokenized whole, in order, with their
    offsets and indices (a byte-level BPE token opening a window carries its leading space there: it must not
    be kept twice), and a lone surrogate in the text breaks no word reported."""
    _, bundle = exported(model_type, "token-classification")
    model = TokenClassifier(bundle, precision="fp32", stride=8)
    text = " ".join(s for group in builtin_sample().texts.values() for s in group) + " Paris \ud800 Berlin"
    whole = Tokenizer.from_str(model.tokenizer.to_str())
    whole.no_truncation()
    encoding = whole.encode(text.replace("\ud800", "\ufffd"))
    assert len(encoding) > 4 * model.max_length
    expected = [
        (i, start, end, token)
        for i, (token, special, (start, end)) in enumerate(
            zip(encoding.tokens, encoding.special_tokens_mask, encoding.offsets)
        )
        if not special
    ]
    tokens = model.predict(text, aggregation="none", ignore_labels=())
    unknown = model.tokenizer.id_to_token(model.bundle.manifest.special_tokens["unk"].id)
    assert [(t["index"], t["start"], t["end"], t["word"]) for t in tokens] == [
        (i, start, end, "\ufffd" if token == unknown else token) for i, start, end, token in expected
    ]
    assert model.predict(text, aggregation="none", ignore_labels=None) == [t for t in tokens if t["entity"] != "O"]
    for aggregation in AGGREGATIONS:  # every word reported is text UTF-8 can carry (JSON, the server)
        assert "".join(e["word"] for e in model.predict(text, aggregation=aggregation)).encode("utf-8")


def test_a_wrong_position_offset_fails_the_parity_proof(tmp_path, monkeypatch):
    """RoBERTa's positions start after the padding index; a graph one row off is refused by the parity proof
    (padded batches of real text), and nothing is written."""
    from onnx import numpy_helper

    from mbert_edge.errors import ExportError
    from mbert_edge.export import export_bundle, fusion

    real = fusion.fuse_position_embeddings

    def off_by_one(model):
        found = real(model)
        for tensor in model.model.graph.initializer:
            if tensor.name.endswith("_fused"):
                table = numpy_helper.to_array(tensor)
                tensor.CopyFrom(numpy_helper.from_array(np.roll(table, 1, axis=0), tensor.name))
        return found

    monkeypatch.setattr(fusion, "fuse_position_embeddings", off_by_one)
    checkpoint = write_family_checkpoint(tmp_path / "checkpoint", "roberta", "sequence-classification")
    with pytest.raises(ExportError, match="fused ONNX output differs from PyTorch"):
        export_bundle(str(checkpoint), tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


@pytest.mark.slow
@pytest.mark.parametrize("model_type", FAMILIES)
def test_bench_measures_every_architecture(exported, model_type, tmp_path):
    """Figures are read from bench.json, never from the formatted table: on a busy machine the table marks a
    figure "(wide spread)", which is for people, not for parsing."""
    _, bundle = exported(model_type, "token-classification")
    result = quick_bench(bundle, "8,32", "4", "--no-cold-start", "--no-threads", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "| precision | 8 tokens | 32 tokens |" in result.stdout
    fp32 = json.loads((tmp_path / "bench.json").read_text())["variants"]["fp32"]
    for row in fp32["latency_by_length"].values():
        assert 0 <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] < 1000 and row["runs"] >= 2
    assert set(fp32["latency_by_length"]) == {"8", "32"} and fp32["end_to_end"]["p50_ms"] > 0
    rate = fp32["throughput"]["4"]
    assert 0 < rate["sentences_per_s"] < rate["tokens_per_s"]


@pytest.mark.slow
def test_per_tensor_embedding_table_is_refused_where_positions_are_an_input(exported, tmp_path):
    """ONNX Runtime's quantized embedding node has no position-ids input: on XLM-R the per-tensor table would
    silently drop them, so it is refused in one line and the bundle is left as it was."""
    _, bundle = exported("xlm-roberta", "sequence-classification")
    copy = Path(shutil.copytree(bundle, tmp_path / "b"))
    result = run_cli("quantize", str(copy), "--method", "dynamic", "--embedding-table", "per-tensor")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1:] == [
        "Error: --embedding-table per-tensor cannot keep this model's "
        "position ids (RoBERTa, XLM-R): ONNX Runtime's quantized embedding "
        "node has no such input; use per-row"
    ]
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in bundle.iterdir())
    assert "int8" not in Bundle.open(copy).models


def test_special_tokens_named_null_are_read_from_the_tokenizer(exported, tmp_path):
    """tokenizer_config.json may say "cls_token": null: the role then comes from the tokenizer's own frame."""
    import json

    from mbert_edge.export.tokenizer import build_tokenizer

    checkpoint, _ = exported("xlm-roberta", "sequence-classification")
    copy = Path(shutil.copytree(checkpoint, tmp_path / "checkpoint"))
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.update(cls_token=None, sep_token=None)
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    _, special, _ = build_tokenizer(copy)
    assert (special["cls"].token, special["cls"].id, special["sep"].token, special["sep"].id) == ("<s>", 0, "</s>", 2)


PAIRS = [
    ("Der Hund schläft.", "Ein Tier ruht."),
    ("Il pleut.", "Il fait beau 🙂"),
    ("東京は大きい。", "Tokyo is big."),
    ("a", "b"),
]


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["bert", *FAMILIES])
def test_pairs_agree_with_the_text_classification_pipeline(exported, seqcls_checkpoint, seqcls_bundle, model_type):
    """Pairs as the tokenizer's pair template lays them out (segment ids where the model takes them), cut as
    transformers cuts them, classified as the `text-classification` pipeline classifies `{"text", "text_pair"}`."""
    import transformers

    if model_type == "bert":  # WordPiece with two segment types
        checkpoint, bundle = seqcls_checkpoint, seqcls_bundle
    else:
        checkpoint, bundle = exported(model_type, "sequence-classification")
    pipe = transformers.pipeline("text-classification", model=str(checkpoint), tokenizer=str(checkpoint))
    expected = pipe([{"text": a, "text_pair": b} for a, b in PAIRS], top_k=None)
    model = Classifier(bundle, precision="fp32")
    got = model.predict(PAIRS, top_k=None)
    for ours, theirs in zip(got, expected):
        assert {r["label"]: r["score"] for r in ours} == pytest.approx(
            {r["label"]: r["score"] for r in theirs}, abs=1e-5
        )
    assert model.predict({"text": PAIRS[0][0], "text_pair": PAIRS[0][1]}) == got[0][0]  # the pipeline's dict, alone

    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    long, short = " ".join(TEXTS * 3), "kurz und gut"
    for strategy, pairs in {
        "longest_first": [(long, short), (short, long), (long, long[::-1])],
        "only_first": [(long, short)],
        "only_second": [(short, long)],
    }.items():
        theirs = tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation=strategy, max_length=128)
        windows = [group[0] for group in model.runner.pair_windows(pairs, strategy)]
        assert [w.ids for w in windows] == theirs["input_ids"]
        if "token_type_ids" in theirs:
            assert [w.type_ids for w in windows] == theirs["token_type_ids"]
    with pytest.raises(ValueError, match=r"^pair 0's second text leaves the other no room in 128 tokens, so trunc"):
        model.predict((short, long), truncation="only_first")
    with pytest.warns(UserWarning, match="some pairs are longer than 128 tokens and were cut"):
        model.predict((long, short))
