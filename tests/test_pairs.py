"""Pairs of texts: zero-shot classification over NLI bundles and reranking with cross-encoder bundles of every
architecture, against transformers' `zero-shot-classification` pipeline and the PyTorch cross-encoder (the pair
encodings and `Classifier` on pairs: test_architectures.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import NLI_LABELS
from families import write_family_checkpoint

from mbert_edge import Reranker, ZeroShotClassifier
from mbert_edge.errors import BundleError

pytestmark = pytest.mark.slow  # exports a tiny NLI model per architecture

TEXTS = ["Der Zug hatte zwei Stunden Verspätung.", "Le gâteau au chocolat est délicieux.", "東京の天気は晴れ。"]
CANDIDATES = ["Reise", "cuisine", "weather", "sport", "politics"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint, bundle) of a tiny sequence-classification model per architecture and labels, exported once."""
    from mbert_edge.export import export_bundle

    made: dict[tuple[str, tuple[str, ...]], tuple[Path, Path]] = {}

    def get(model_type: str, labels: list[str]) -> tuple[Path, Path]:
        key = (model_type, tuple(labels))
        if key not in made:
            root = tmp_path_factory.mktemp(f"{model_type}-{len(labels)}-labels")
            checkpoint = write_family_checkpoint(root / "checkpoint", model_type, "sequence-classification", labels)
            made[key] = checkpoint, export_bundle(str(checkpoint), root / "bundle").path
        return made[key]

    return get


def assert_same_ranking(ours: dict, theirs: dict) -> None:
    """The same sequence and label scores (to 1e-5), best first: labels whose scores differ by less than that may
    swap (the tiny random models give near ties)."""
    assert ours["sequence"] == theirs["sequence"]
    scores = dict(zip(theirs["labels"], theirs["scores"]))
    assert dict(zip(ours["labels"], ours["scores"])) == pytest.approx(scores, abs=1e-5)
    assert all(a >= b - 1e-5 for a, b in zip(ours["scores"], ours["scores"][1:]))


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "roberta", "xlm-roberta"])
def test_zero_shot_agrees_with_the_pipeline(exported, model_type):
    import transformers

    checkpoint, bundle = exported(model_type, NLI_LABELS)
    pipe = transformers.pipeline("zero-shot-classification", model=str(checkpoint), tokenizer=str(checkpoint))
    pipe.tokenizer.pad_token = pipe.tokenizer.pad_token or "<pad>"  # the RoBERTa folder names no special tokens
    model = ZeroShotClassifier(bundle, precision="fp32")
    assert (model.entailment_id, model.contradiction_id) == (2, 0)
    for options in ({}, {"multi_label": True}, {"hypothesis_template": "Es geht um {}."}):
        expected = pipe(TEXTS, candidate_labels=CANDIDATES, **options)
        got = model.predict(TEXTS, CANDIDATES, **options)
        for ours, theirs in zip(got, expected):
            assert_same_ranking(ours, theirs)
    alone = model.predict(TEXTS[0], "weather, sport")  # one text, labels as one comma-separated string
    assert_same_ranking(alone, pipe(TEXTS[0], candidate_labels="weather, sport"))
    one_label = model.predict(TEXTS[1], ["cuisine"])  # entailment against contradiction, as multi_label
    assert_same_ranking(one_label, pipe(TEXTS[1], candidate_labels=["cuisine"]))
    batched = model.predict(TEXTS, CANDIDATES, multi_label=True)
    for text, result in zip(TEXTS, batched):
        assert result["scores"] == pytest.approx(model.predict(text, CANDIDATES, multi_label=True)["scores"], abs=1e-6)


def test_zero_shot_refuses_what_it_cannot_do(nli_bundle, seqcls_bundle):
    model = ZeroShotClassifier(nli_bundle, precision="fp32")
    for template in ("This example is about it.", "{1}", "{x}", "{:>20000000}", "{!r}", "{} {}", "{0.__class__}"):
        with pytest.raises(ValueError, match="must have one \\{\\} where the label goes and no other field"):
            model.predict(TEXTS[0], CANDIDATES, hypothesis_template=template)
    with pytest.raises(ValueError, match="is not a template \\(Single '\\{' encountered"):
        model.predict(TEXTS[0], CANDIDATES, hypothesis_template="It is {")
    assert model.predict(TEXTS[0], ["a"], "{0} {{x}}") == model.predict(TEXTS[0], ["a"], "{} {{x}}")
    assert model.predict([], CANDIDATES) == []  # a list in, a list out (it failed on the truncation's check)
    with pytest.raises(ValueError, match="candidate_labels is empty"):
        model.predict(TEXTS[0], " , ")
    with pytest.raises(TypeError, match="candidate_labels\\[1\\] must be a str, got int"):
        model.predict(TEXTS[0], ["sport", 2])
    with pytest.raises(TypeError, match="candidate_labels must be a str or a sequence of str, got int"):
        model.predict(TEXTS[0], 3)
    with pytest.raises(BundleError, match="has no entailment label \\(its labels: negative, neutral, positive\\)"):
        ZeroShotClassifier(seqcls_bundle)


def test_a_call_takes_texts_or_pairs_and_pair_truncations(seqcls_bundle):
    from mbert_edge import Classifier

    clf = Classifier(seqcls_bundle, precision="fp32")
    with pytest.raises(TypeError, match=r"texts\[1\]: a call takes texts or pairs of texts, not both"):
        clf.predict([("Guten Morgen", "Hallo"), "Bonjour"])
    with pytest.raises(TypeError, match=r"texts\[0\] must be str or a \(text, text_pair\) pair of str, got tuple"):
        clf.predict([("Guten Morgen", 1)])
    with pytest.raises(ValueError, match="truncation must be one of longest_first, only_first, only_second"):
        clf.predict(("Guten Morgen", "Hallo"), truncation="head")
    assert clf.predict(("Guten Morgen", "Hallo")) == clf.predict([{"text": "Guten Morgen", "text_pair": "Hallo"}])[0]


RELEVANCE = ["score"]  # a cross-encoder's one logit
QUERY = "Wo ist der Bahnhof?"
DOCUMENTS = ["Der Bahnhof ist links.", "Il pleut à Paris.", "駅は左です。", "The station is on the left.", "x"]


def torch_relevance(checkpoint: Path, query: str, documents: list[str]) -> np.ndarray:
    """The PyTorch model's relevance logit of each (query, document), as transformers tokenizes the pairs."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    tokenizer.pad_token = tokenizer.pad_token or "<pad>"  # the RoBERTa folder names no special tokens
    model = transformers.AutoModelForSequenceClassification.from_pretrained(checkpoint, attn_implementation="eager")
    batch = tokenizer([query] * len(documents), documents, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        return model.eval()(**batch).logits[:, 0].numpy()


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "roberta", "xlm-roberta"])
def test_rerank_agrees_with_the_pytorch_cross_encoder(exported, model_type):
    """Against the PyTorch model's logits, and sentence-transformers' `CrossEncoder.rank` where it is installed."""
    checkpoint, bundle = exported(model_type, RELEVANCE)
    reranker = Reranker(bundle, precision="fp32")
    logits = torch_relevance(checkpoint, QUERY, DOCUMENTS)
    ranked = reranker.rank(QUERY, DOCUMENTS, return_documents=True)
    assert [r["index"] for r in ranked] == list(np.argsort(-logits, kind="stable"))
    assert [r["score"] for r in ranked] == pytest.approx(sorted(1 / (1 + np.exp(-logits)), reverse=True), abs=1e-5)
    assert [r["text"] for r in ranked] == [DOCUMENTS[r["index"]] for r in ranked]
    raw = reranker.rank(QUERY, DOCUMENTS, top_k=2, raw_scores=True)
    assert [r["score"] for r in raw] == pytest.approx(sorted(logits, reverse=True)[:2], abs=1e-5) and "text" not in raw[
        0
    ]
    alone = [reranker.rank(QUERY, [doc], raw_scores=True)[0]["score"] for doc in DOCUMENTS]
    assert alone == pytest.approx(list(logits), abs=1e-5)  # batched as one at a time
    try:
        from sentence_transformers import CrossEncoder  # the peers extra installs it
    except ImportError:
        return
    encoder = CrossEncoder(str(checkpoint), device="cpu")
    encoder.tokenizer.pad_token = encoder.tokenizer.pad_token or "<pad>"  # as in torch_relevance
    theirs = encoder.rank(QUERY, DOCUMENTS, top_k=3)
    ours = {r["index"]: r["score"] for r in ranked}  # by document: two near-tied ones may swap places in theirs
    assert [ours[r["corpus_id"]] for r in theirs] == pytest.approx([r["score"] for r in theirs], abs=1e-5)
    assert [r["score"] for r in ranked[:3]] == pytest.approx([r["score"] for r in theirs], abs=1e-5)


def test_a_long_document_is_read_in_windows_with_the_query(exported):
    checkpoint, bundle = exported("bert", RELEVANCE)
    reranker = Reranker(bundle, precision="fp32")
    long = " ".join(DOCUMENTS * 40)  # several windows of 128 tokens
    head = reranker.rank(QUERY, [long], raw_scores=True, truncation="only_second")[0]["score"]
    assert head == pytest.approx(torch_relevance(checkpoint, QUERY, [long])[0], abs=1e-5)  # transformers cuts it so
    windows = reranker.runner.pair_windows([(QUERY, long)], "window")[0]
    query = reranker.tokenizer.encode(QUERY, add_special_tokens=False).ids
    assert len(windows) > 2 and all([t for t, n in zip(w.ids, w.sequence_ids) if n == 0] == query for w in windows)
    scores = [float(x[0]) for x in reranker.runner.run(windows)]
    assert reranker.rank(QUERY, [long], raw_scores=True)[0]["score"] == pytest.approx(max(scores), abs=1e-6)
    assert reranker.rank(QUERY, []) == []


def test_a_reranker_needs_one_relevance_logit(seqcls_bundle):
    with pytest.raises(BundleError, match="has 3 labels \\(negative, neutral, positive\\); a reranker has one"):
        Reranker(seqcls_bundle)


def test_the_server_ranks_and_classifies_pairs(rerank_bundle, seqcls_bundle):
    """text-embeddings-inference's /rerank and pairs on /predict answer as the in-process model does."""
    from starlette.testclient import TestClient

    from mbert_edge import load
    from mbert_edge.serve.app import create_app
    from mbert_edge.serve.settings import ServerSettings

    reranker = load(rerank_bundle)
    assert isinstance(reranker, Reranker)  # a classifier with one logit loads as a reranker
    one = reranker.scores(QUERY, DOCUMENTS[0])  # one document as a str, not its characters
    assert one.shape == (1,) and one[0] == pytest.approx(reranker.scores(QUERY, [DOCUMENTS[0]])[0], abs=1e-6)
    with pytest.raises(TypeError, match=r"^raw_scores must be a bool, got str$"):
        reranker.scores(QUERY, DOCUMENTS, raw_scores="yes")
    with TestClient(create_app(reranker, ServerSettings(bundle=str(rerank_bundle)))) as client:
        ranked = client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS, "return_text": True}).json()
        expected = reranker.rank(QUERY, DOCUMENTS, return_documents=True)
        assert [(r["index"], r["text"]) for r in ranked] == [(r["index"], r["text"]) for r in expected]
        assert [r["score"] for r in ranked] == pytest.approx([r["score"] for r in expected], abs=1e-6)
        body = {"query": QUERY, "texts": DOCUMENTS, "raw_scores": True, "truncate": True}
        raw = client.post("/rerank", json=body).json()
        head = reranker.rank(QUERY, DOCUMENTS, raw_scores=True, truncation="only_second")
        assert [r["score"] for r in raw] == pytest.approx([r["score"] for r in head], abs=1e-6) and "text" not in raw[0]
        missing = client.post("/rerank", json={"texts": DOCUMENTS})
        assert missing.status_code == 422 and missing.json()["error"].startswith("query is missing")
        pairs = [["Der Hund schläft.", "Ein Tier ruht."], ["Il pleut.", "Il fait beau."]]
        answered = client.post("/predict", json={"inputs": pairs, "top_k": None}).json()
        local = reranker.predict([tuple(p) for p in pairs], top_k=None)
        assert [x["score"] for r in answered for x in r] == pytest.approx([x["score"] for r in local for x in r])
        mixed = client.post("/predict", json={"inputs": [pairs[0], "Bonjour"]})
        assert mixed.status_code == 422 and "mixes texts and pairs" in mixed.json()["error"]
        published = client.get("/openapi.json").json()["paths"]["/rerank"]["post"]["requestBody"]
        assert published["content"]["application/json"]["schema"]["required"] == ["texts", "query"]
    with TestClient(create_app(load(seqcls_bundle), ServerSettings(bundle=str(seqcls_bundle)))) as client:
        refused = client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS})
        assert refused.status_code == 400 and "needs a cross-encoder bundle" in refused.json()["error"]


def test_the_server_classifies_zero_shot(nli_bundle, seqcls_bundle):
    """/zero-shot answers as the in-process ZeroShotClassifier, over the NLI classifier's own session."""
    from starlette.testclient import TestClient

    from mbert_edge import Classifier, load
    from mbert_edge.serve.app import create_app
    from mbert_edge.serve.settings import ServerSettings

    model = load(nli_bundle)
    assert type(model) is Classifier  # an NLI bundle loads as a classifier of pairs; /zero-shot shares its session
    local = ZeroShotClassifier(nli_bundle)
    with TestClient(create_app(model, ServerSettings(bundle=str(nli_bundle)))) as client:
        answered = client.post("/zero-shot", json={"inputs": TEXTS, "candidate_labels": CANDIDATES}).json()
        expected = local.predict(TEXTS, CANDIDATES)
        assert [r["sequence"] for r in answered] == TEXTS
        for ours, theirs in zip(answered, expected):
            assert_same_ranking(ours, theirs)
        body = {"inputs": TEXTS[0], "candidate_labels": "Reise, cuisine", "multi_label": True}
        single = client.post("/zero-shot", json={**body, "hypothesis_template": "Es geht um {}."}).json()
        assert_same_ranking(single, local.predict(TEXTS[0], ["Reise", "cuisine"], "Es geht um {}.", multi_label=True))
        missing = client.post("/zero-shot", json={"inputs": TEXTS})
        assert missing.status_code == 422 and missing.json()["error"].startswith("candidate_labels is missing")
        for template in ("About this.", "{1}", "{", "{:>2000000000}"):
            no_slot = client.post("/zero-shot", json={**body, "hypothesis_template": template})
            assert no_slot.status_code == 422 and "hypothesis_template" in no_slot.json()["error"], no_slot.json()
        many = {"inputs": "Der Zug hatte Verspätung. " * 400, "candidate_labels": ["Reise"] * 200}  # 2 MB of reading
        refused = client.post("/zero-shot", json=many)
        assert refused.status_code == 422 and refused.json()["error_type"] == "too_many_tokens", refused.json()
        assert "read once per label" in refused.json()["error"]
        lone = json.dumps({"inputs": "\ud800 Zug", "candidate_labels": ["\ud800", "Reise"]})  # escaped: valid JSON
        echoed = client.post("/zero-shot", content=lone, headers={"content-type": "application/json"})
        assert echoed.status_code == 200 and echoed.json()["sequence"] == "\ufffd Zug", echoed.text
        assert sorted(echoed.json()["labels"]) == ["Reise", "\ufffd"]  # echoed as the model read them (U+FFFD)
        encoded = b'{"inputs": "a\xed\xa0\x80b", "candidate_labels": ["Reise"]}'  # a surrogate encoded: not UTF-8
        refused = client.post("/zero-shot", content=encoded, headers={"content-type": "application/json"})
        assert refused.status_code == 422 and refused.json()["error"].startswith("the body is not UTF-8"), refused.text
        wrong = client.post("/zero-shot", json={"inputs": TEXTS, "candidate_labels": ["a", 3]})
        assert wrong.status_code == 422 and "candidate_labels" in wrong.json()["error"]
        paths = client.get("/openapi.json").json()["paths"]
        schema = paths["/zero-shot"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema["required"] == ["inputs", "candidate_labels"] and "/rerank" not in paths
    with TestClient(create_app(load(seqcls_bundle), ServerSettings(bundle=str(seqcls_bundle)))) as client:
        refused = client.post("/zero-shot", json={"inputs": TEXTS, "candidate_labels": CANDIDATES})
        assert refused.status_code == 400 and "needs an NLI bundle" in refused.json()["error"]


def test_the_command_line_takes_pairs_and_ranks(rerank_bundle, seqcls_bundle, tmp_path):
    from conftest import run_cli

    from mbert_edge import Classifier

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("Der Hund schläft.\tEin Tier ruht.\nIl pleut.\tIl fait beau.\n", encoding="utf-8")
    predicted = run_cli("predict", str(seqcls_bundle), "--input", str(pairs), "--pair-separator", r"\t", "--top-k", "3")
    assert predicted.returncode == 0, predicted.stderr
    local = Classifier(seqcls_bundle).predict(
        [("Der Hund schläft.", "Ein Tier ruht."), ("Il pleut.", "Il fait beau.")], 3
    )
    got = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [[x["label"] for x in r] for r in got] == [[x["label"] for x in r] for r in local]
    assert [x["score"] for r in got for x in r] == pytest.approx([x["score"] for r in local for x in r], abs=1e-6)
    pairs.write_text("Guten Morgen.\tHallo.\nno separator here\n", encoding="utf-8")
    broken = run_cli("predict", str(seqcls_bundle), "--input", str(pairs), "--pair-separator", r"\t")
    assert broken.returncode == 1 and len(broken.stdout.splitlines()) == 1  # the pair before it was answered
    assert broken.stderr.count("\n") == 1 and "input 2 has no --pair-separator" in broken.stderr, broken.stderr

    ranked = run_cli("rank", str(rerank_bundle), QUERY, *DOCUMENTS, "--top-k", "3")
    assert ranked.returncode == 0, ranked.stderr
    expected = Reranker(rerank_bundle).rank(QUERY, DOCUMENTS, top_k=3, return_documents=True)
    lines = [json.loads(line) for line in ranked.stdout.splitlines()]
    assert [(r["index"], r["text"]) for r in lines] == [(r["index"], r["text"]) for r in expected]
    refused = run_cli("rank", str(seqcls_bundle), QUERY, "doc")
    assert refused.returncode == 1 and "rank needs a cross-encoder bundle" in refused.stderr, refused.stderr

    bad_bytes = [
        sys.executable.encode(),
        b"-m",
        b"mbert_edge",
        b"rank",
        str(rerank_bundle).encode(),
        b"Wo\xff?",
        b"do\xffc",
    ]
    echoed = subprocess.run(bad_bytes, capture_output=True, timeout=600, cwd=Path(__file__).parent)
    assert echoed.returncode == 0, echoed.stderr  # an argument that is not UTF-8 is read, and echoed, as U+FFFD
    assert json.loads(echoed.stdout.decode("utf-8"))["text"] == "do\ufffdc"
    (tmp_path / "docs.txt").write_bytes(b"gut\n\xff\n")
    broken = run_cli("rank", str(rerank_bundle), QUERY, "--input", str(tmp_path / "docs.txt"))
    assert broken.returncode == 1 and broken.stdout == "" and "line 2 of --input" in broken.stderr
    assert broken.stderr.rstrip().endswith("; nothing was ranked"), broken.stderr


def test_pair_models_are_proved_calibrated_and_gated_on_pairs(nli_bundle, rerank_bundle, tmp_path):
    """Export proves a text classifier on the built-in pairs too; quantize calibrates and gates a cross-encoder or
    NLI model on pairs (the built-in sample or a `.tsv` of them), and faithful INT8 scores pairs batch-invariantly."""
    import shutil

    from conftest import run_cli

    from mbert_edge.bundle import Bundle
    from mbert_edge.quantization import QuantizationConfig
    from mbert_edge.quantize.pipeline import quantize_bundle
    from mbert_edge.textdata import builtin_sample

    pair_langs = set(builtin_sample(pairs=True).texts)
    assert len(pair_langs) == 12 and all(
        len(p) == 2 for group in builtin_sample(pairs=True).texts.values() for p in group
    )
    proved = Bundle.open(nli_bundle).manifest.export.parity.languages
    assert {f"pairs/{lang}" for lang in pair_langs} <= set(proved) and "deu" in proved
    reranker = Path(shutil.copytree(rerank_bundle, tmp_path / "rerank"))
    report = quantize_bundle(reranker, QuantizationConfig.of("faithful", min_agreement=0.0))
    assert set(report["groups"]) == pair_langs and report["overall"]["decisions"] == 60
    assert Bundle.open(reranker).manifest.quantization.chosen["calibration_texts"] == 60
    int8 = Reranker(reranker, precision="int8")
    documents = [b for group in builtin_sample(pairs=True).texts.values() for _, b in group][:24]
    batched = [r["score"] for r in sorted(int8.rank(QUERY, documents, raw_scores=True), key=lambda r: r["index"])]
    assert batched == [int8.rank(QUERY, [doc], raw_scores=True)[0]["score"] for doc in documents]  # exactly

    data = tmp_path / "xnli"
    data.mkdir()
    (data / "deu.tsv").write_text("Der Hund schläft.\tEin Tier ruht.\t2\nEs regnet.\tDie Sonne scheint.\t0\n")
    (data / "fra.txt").write_text("Il pleut.\nBonjour.\n")
    nli = Path(shutil.copytree(nli_bundle, tmp_path / "nli"))
    quantized = run_cli("quantize", str(nli), "--method", "dynamic", "--min-agreement", "0", "--data", str(data))
    assert quantized.returncode == 0, quantized.stderr
    gated = json.loads((nli / "accuracy.int8.json").read_text())["groups"]
    assert set(gated) == {"deu", "fra"} and gated["deu"]["texts"] == 2 and "accuracy_reference" in gated["deu"]
    (data / "deu.tsv").write_text("Der Hund schläft.\tEin Tier ruht.\nnur ein Text\n")
    broken = run_cli("quantize", str(nli), "--data", str(data))
    assert broken.returncode == 1 and broken.stderr.count("\n") == 1, broken.stderr
    assert "deu.tsv: every line must be text<TAB>text_pair" in broken.stderr


def test_batch_reads_pairs_and_scores_queries(nli_bundle, rerank_bundle, seqcls_bundle, tmp_path):
    """`batch --pair-column` classifies (text, text_pair) rows and `--query-column` scores (query, text) rows with a
    cross-encoder, equal to the runtime's; a bad second text is its row's error; misuse is one line."""
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa
    from conftest import run_cli

    from mbert_edge import Classifier
    from mbert_edge.textdata import builtin_sample

    pairs = [p for group in builtin_sample(pairs=True).texts.values() for p in group]
    firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
    seconds[5], seconds[9] = None, " "
    table = pa.table({"id": range(len(pairs)), "text": firsts, "hypothesis": seconds, "query": firsts})
    pq.write_table(table, tmp_path / "in.parquet")
    errors = {5: "null text in hypothesis", 9: "empty text in hypothesis"}

    run = run_cli(
        "batch", str(nli_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "nli"), "--pair-column", "hypothesis"
    )
    assert run.returncode == 0, run.stderr
    out = pq.read_table(tmp_path / "nli").to_pylist()
    good = [i for i in range(len(pairs)) if i not in errors]
    expected = dict(zip(good, Classifier(nli_bundle).predict([pairs[i] for i in good])))
    for row in out:
        if row["id"] in errors:
            assert (row["label"], row["error"]) == (None, errors[row["id"]])
        else:
            want = expected[row["id"]]
            assert row["label"] == want["label"] and row["score"] == pytest.approx(want["score"], abs=1e-6)

    table = table.set_column(2, "hypothesis", pa.array([b for _, b in pairs]))  # documents, each with its query
    pq.write_table(table, tmp_path / "docs.parquet")
    args = ("--text-column", "hypothesis", "--query-column", "query")
    run = run_cli("batch", str(rerank_bundle), str(tmp_path / "docs.parquet"), str(tmp_path / "rank"), *args)
    assert run.returncode == 0, run.stderr
    ranked = pq.read_table(tmp_path / "rank")
    assert ranked.column_names == ["id", "text", "hypothesis", "query", "score", "error"]
    reranker = Reranker(rerank_bundle)
    expected_scores = [reranker.scores(a, [b])[0] for a, b in pairs]  # one query at a time
    assert ranked.column("score").to_pylist() == pytest.approx(expected_scores, abs=1e-6)
    from mbert_edge.batch import ray_predictor  # what each Ray actor runs, here in-process

    on_ray = ray_predictor(rerank_bundle, text_column="hypothesis", query_column="query")()(table)
    assert on_ray.column("score").to_pylist() == pytest.approx(expected_scores, abs=1e-6)

    refusals = {
        "--pair-column": (seqcls_bundle, "--pair-column", "hypothesis", "--query-column", "query"),
        "not a cross-encoder bundle": (nli_bundle, "--query-column", "query"),
        "--top-k applies to labels": (rerank_bundle, "--query-column", "query", "--top-k", "2"),
        "no column 'premise'": (nli_bundle, "--pair-column", "premise"),
    }
    for message, (bundle, *options) in refusals.items():
        refused = run_cli("batch", str(bundle), str(tmp_path / "docs.parquet"), str(tmp_path / "x"), *options)
        assert refused.returncode in (1, 2) and message in refused.stderr and "Traceback" not in refused.stderr


def test_a_pair_one_text_cannot_be_cut_to_fit_is_named(nli_bundle, tmp_path):
    """A pair whose kept text leaves the other no room under "only_first" / "only_second" is a `WindowError`
    naming the pair (`Runner.cut_errors` agrees with the tokenizer at every length around the edge), a 422
    `validation` from the server, and its row's error in `batch`, which finishes the other rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from conftest import run_cli
    from starlette.testclient import TestClient

    from mbert_edge import Classifier, WindowError
    from mbert_edge.serve.app import create_app
    from mbert_edge.serve.settings import ServerSettings

    model = Classifier(nli_bundle)
    runner, limit = model.runner, model.max_length
    for words in range(limit - 8, limit + 2):  # "a" is one token: the kept text alone fills the window here
        long = " ".join(["a"] * words)
        for pair, truncation in (((long, "b c"), "only_second"), (("b c", long), "only_first")):
            error = runner.cut_errors([pair], truncation)[0]
            try:
                runner.pair_windows([pair], truncation)
                cut = True
            except WindowError as raised:
                cut = False
                assert raised.no_room and str(raised) == f"pair 0's {error}"
            assert (error is None) == cut, (words, truncation)
    long = " ".join(["a"] * limit)
    with pytest.raises(WindowError, match=r"^pair 1's first text leaves the other no room in \d+ tokens"):
        model.predict([("a", "b"), (long, "b")], truncation="only_second")
    assert runner.cut_errors([(long, "b")], "longest_first") == [None]

    with TestClient(create_app(model, ServerSettings(bundle=str(nli_bundle)))) as client:
        refused = client.post("/predict", json={"inputs": [[long, "b"]], "truncation": "only_second"})
        assert refused.status_code == 422 and refused.json()["error_type"] == "validation", refused.json()
        assert "leaves the other no room" in refused.json()["error"]

    pq.write_table(pa.table({"text": ["a", long, "c"], "hypothesis": ["b", "b", "d"]}), tmp_path / "in.parquet")
    args = ("--pair-column", "hypothesis", "--truncation", "only_second")
    run = run_cli("batch", str(nli_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "out"), *args)
    assert run.returncode == 0, run.stderr
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert rows[1]["label"] is None and rows[1]["error"] == str(runner.cut_errors([(long, "b")], "only_second")[0])
    expected = model.predict([("a", "b"), ("c", "d")], truncation="only_second")
    assert [(r["label"], r["error"]) for r in rows[::2]] == [(e["label"], None) for e in expected]
