"""Vocabulary trimming: text in the kept scripts tokenizes and scores exactly as before."""

from __future__ import annotations

import json
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_shared, run_cli
from tokenizers import Tokenizer

from mbert_edge import Classifier
from mbert_edge.errors import BundleError, TrimError
from mbert_edge.quantization import QuantizationConfig
from mbert_edge.quantize.pipeline import quantize_bundle
from mbert_edge.quantize.trim import keep_by_scripts, script_pattern, trim, trimmed_tokenizer_json
from mbert_edge.runtime import Runner
from mbert_edge.textdata import TextSet, builtin_sample

LATIN = script_pattern(["latin"])
SAMPLE = [s for group in builtin_sample().texts.values() for s in group]


def random_latin_texts(vocab_chars: list[str], real: list[str], count: int, seed: int = 0) -> list[str]:
    """Random strings of Latin, Common and Inherited characters (letters, accents, digits, punctuation,
    symbols, combining marks), some spliced into real sentences: the inputs the proof is about."""
    rng = random.Random(seed)
    extra = [*list("0123456789 .,;:!?'\"()-–—/&%€$@#*+=[]{}…«»¿¡"), "́", "̈", "🙂", "ß", "Œ", "ǅ"]
    alphabet = vocab_chars + extra
    texts = []
    for _ in range(count):
        noise = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        base = rng.choice(real) if rng.random() < 0.5 else ""
        cut = rng.randint(0, len(base))
        texts.append(base[:cut] + noise + base[cut:])
    return [t for t in texts if LATIN.fullmatch(t) or not t]


def tokens_back(source: Path, trimmed_bundle: Path, texts: list[str]) -> list[list[int]]:
    """Trimmed token ids mapped back, through their token strings, to the original vocabulary's ids."""
    trimmed = Tokenizer.from_file(str(trimmed_bundle / "tokenizer.json"))
    original = Tokenizer.from_file(str(source / "tokenizer.json")).get_vocab()
    back = {new: original[piece] for piece, new in trimmed.get_vocab().items()}
    return [[back[i] for i in e.ids] for e in trimmed.encode_batch(texts)]


@pytest.fixture(scope="module")
def quantized_bundles(tmp_path_factory, seqcls_bundle):
    """The tiny classifier with plain and faithful INT8, each trimmed to Latin."""
    out = {}
    for method in ("dynamic", "faithful"):
        source = Path(shutil.copytree(seqcls_bundle, tmp_path_factory.mktemp(method) / "b"))
        quantize_bundle(source, QuantizationConfig(method=method, min_agreement=0.0))
        out[method] = (source, trim(source, source.parent / "latin", scripts=["latin"]).path)
    return out


@pytest.mark.slow
def test_scripts_trim_keeps_outputs_identical(quantized_bundles):
    source, trimmed = quantized_bundles["dynamic"]
    manifest = json.loads((trimmed / "mbert_edge.json").read_text())
    original = json.loads((source / "mbert_edge.json").read_text())
    assert manifest["vocab_size"] < original["vocab_size"] == manifest["trim"]["original_vocab_size"]
    assert manifest["trim"]["mode"] == "scripts" and manifest["labels"] == original["labels"]
    assert (
        f"kept {manifest['vocab_size']:,} of {original['vocab_size']:,} tokens" in run_cli("info", str(trimmed)).stdout
    )
    vocab_chars = [t for t in Tokenizer.from_file(str(source / "tokenizer.json")).get_vocab() if len(t) == 1]
    latin_sample = [s for s in SAMPLE if LATIN.fullmatch(s)]
    texts = latin_sample + random_latin_texts([c for c in vocab_chars if LATIN.fullmatch(c)], latin_sample, 400)
    assert len(texts) > 300
    before = Tokenizer.from_file(str(source / "tokenizer.json")).encode_batch(texts)
    assert tokens_back(source, trimmed, texts) == [e.ids for e in before]
    for precision, tolerance in (("fp32", 0.0), ("int8", 1e-6)):
        a = Classifier(source, precision).logits(texts, batch_size=16)
        b = Classifier(trimmed, precision).logits(texts, batch_size=16)
        assert np.abs(a - b).max() <= tolerance and (a.argmax(1) == b.argmax(1)).all()


def test_faithful_int8_trims_exactly(quantized_bundles):
    source, trimmed = quantized_bundles["faithful"]
    latin = [s for s in SAMPLE if LATIN.fullmatch(s)]
    a, b = Classifier(source).logits(latin), Classifier(trimmed).logits(latin)
    assert np.abs(a - b).max() <= 1e-6


def test_trimmed_runtime_warns_on_unknown_text(quantized_bundles):
    _, trimmed = quantized_bundles["dynamic"]
    clf = Classifier(trimmed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict("Guten Morgen, wie geht es dir?")
    with pytest.warns(UserWarning, match="unknown to the trimmed vocabulary"):
        clf.predict(["Доброе утро", "Καλημέρα", "Guten Morgen"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per model
        clf.predict("Доброе утро")


def test_corpus_trim_reports_coverage(tmp_path, seqcls_bundle):
    corpus = TextSet({lang: builtin_sample().texts[lang] * 3 for lang in ("deu", "fra")})
    bundle = trim(seqcls_bundle, tmp_path / "corpus", corpus=corpus, holdout=0.25)
    record = bundle.manifest.trim
    assert record.mode == "corpus" and record.scripts == ["Latin"]
    assert set(record.coverage) == {"deu", "fra"} and record.coverage["deu"]["unchanged"] == 1.0
    assert Runner.open(bundle).head_outputs(["Bonjour"])[0].shape == (3,)


@pytest.mark.slow
def test_bad_requests(tmp_path, seqcls_bundle, quantized_bundles):
    with pytest.raises(TrimError, match="unknown Unicode script 'klingon'"):
        trim(seqcls_bundle, tmp_path / "x", scripts=["klingon"])
    with pytest.raises(TrimError, match="either --scripts or --corpus"):
        trim(seqcls_bundle, tmp_path / "x")
    with pytest.raises(TrimError, match="already trimmed"):
        trim(quantized_bundles["dynamic"][1], tmp_path / "x", scripts=["latin"])
    result = run_cli("trim", str(seqcls_bundle), str(tmp_path / "y"), "--scripts", "latin,klingon")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1 and "klingon" in result.stderr
    for scripts in (",,", "latin,", "latin, ,greek"):
        result = run_cli("trim", str(seqcls_bundle), str(tmp_path / "y"), "--scripts", scripts)
        assert result.returncode == 1 and "an empty script name" in result.stderr and not (tmp_path / "y").exists()
    spaced = run_cli("trim", str(seqcls_bundle), str(tmp_path / "spaced"), "--scripts", "latin, greek")
    assert spaced.returncode == 0 and "(scripts: latin, greek)" in spaced.stdout, spaced.stdout + spaced.stderr

    copy = tmp_path / "copy"
    shutil.copytree(seqcls_bundle, copy)
    with pytest.raises(BundleError, match="holds the input"):  # --force must not replace the bundle it reads
        trim(copy, tmp_path, scripts=["latin"], force=True)
    weights = copy / "model.onnx.data"
    tampered = bytearray(weights.read_bytes())
    tampered[-4000:-3000] = bytes(1000)
    weights.write_bytes(bytes(tampered))
    with pytest.raises(BundleError, match=r"model\.onnx\.data does not match the sha256"):  # not re-signed
        trim(copy, tmp_path / "z", scripts=["latin"])
    assert not (tmp_path / "z").exists()


@pytest.mark.slow  # the real 119,547-token vocabulary
def test_mbert_vocab_latin_trim_on_tatoeba(tmp_path, mbert_vocab_checkpoint):
    """The real mBERT vocabulary: about 69.5k of 119,547 rows kept; every Latin-script Tatoeba sentence
    tokenizes identically, and the model's outputs on them are identical."""
    from mbert_edge.export import export_bundle

    tatoeba = needs_shared("tatoeba")
    source = export_bundle(str(mbert_vocab_checkpoint), tmp_path / "mbert").path
    trimmed = trim(source, tmp_path / "latin", scripts=["latin"]).path
    assert 69_000 < json.loads((trimmed / "mbert_edge.json").read_text())["vocab_size"] < 70_000
    original = Tokenizer.from_file(str(source / "tokenizer.json"))
    checked = 0
    for file in sorted(tatoeba.glob("*.txt")):
        latin = [s for s in file.read_text(encoding="utf-8").splitlines() if LATIN.fullmatch(s)]
        assert tokens_back(source, trimmed, latin) == [e.ids for e in original.encode_batch(latin)], file.name
        checked += len(latin)
        if len(latin) > 500:
            a = Classifier(source).logits(latin[:100])
            b = Classifier(trimmed).logits(latin[:100])
            assert np.array_equal(a, b), file.name
    assert checked > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["scripts", "corpus"])
def test_unigram_vocabulary_trims_exactly(tmp_path, mode):
    """XLM-R's SentencePiece (Unigram) vocabulary: the kept pieces keep their scores, so text in the kept
    scripts (--scripts) or seen in the corpus (--corpus) splits into the same pieces and scores identically,
    FP32 and faithful INT8 alike."""
    from families import write_family_checkpoint

    from mbert_edge.export import export_bundle

    checkpoint = write_family_checkpoint(tmp_path / "checkpoint", "xlm-roberta", "sequence-classification")
    source = export_bundle(str(checkpoint), tmp_path / "bundle").path
    quantize_bundle(source, QuantizationConfig(min_agreement=0.0))
    latin_sample = [s for s in SAMPLE if LATIN.fullmatch(s)]
    if mode == "scripts":
        selector = ["--scripts", "latin"]
        vocab_chars = [t for t in Tokenizer.from_file(str(source / "tokenizer.json")).get_vocab() if len(t) == 1]
        texts = latin_sample + random_latin_texts([c for c in vocab_chars if LATIN.fullmatch(c)], latin_sample, 300)
    else:
        corpus = tmp_path / "corpus.txt"
        corpus.write_text("\n".join(latin_sample), encoding="utf-8")
        selector = ["--corpus", str(corpus), "--holdout", "0"]
        texts = latin_sample
    trimmed = tmp_path / "trimmed"
    result = run_cli("trim", str(source), str(trimmed), *selector)
    assert result.returncode == 0, result.stderr
    if mode == "corpus":  # nothing held out: no coverage claimed (it said "100.0% of 0 held-out sentences")
        assert "coverage not measured" in result.stdout and "of 0 held-out" not in result.stdout, result.stdout
    manifest = json.loads((trimmed / "mbert_edge.json").read_text())
    assert manifest["vocab_size"] < json.loads((source / "mbert_edge.json").read_text())["vocab_size"]
    assert manifest["special_tokens"]["pad"] == {"token": "<pad>", "id": 1}  # <s> <pad> </s> <unk> come first
    before = Tokenizer.from_file(str(source / "tokenizer.json")).encode_batch(texts)
    assert tokens_back(source, trimmed, texts) == [e.ids for e in before]
    for precision in ("fp32", "int8"):
        a = Classifier(source, precision).logits(texts, batch_size=16)
        b = Classifier(trimmed, precision).logits(texts, batch_size=16)
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_unigram_trim_keeps_unknown_specials_and_byte_pieces():
    """A Unigram vocabulary whose specials are named only by the model (unk_id) and the post-processor, with
    byte fallback: trimming to Cyrillic keeps <unk>, <s>, </s> (Latin letters) and the byte pieces that spell
    a Cyrillic letter missing from the vocabulary, so Cyrillic text still splits into the same pieces."""
    from families import unigram_tokenizer

    data = json.loads(unigram_tokenizer().to_str())
    data["added_tokens"] = []
    data["model"]["vocab"] += [[f"<0x{byte:02X}>", -30.0] for byte in range(256)]
    data["model"]["byte_fallback"] = True
    original = Tokenizer.from_str(json.dumps(data))
    trimmed = Tokenizer.from_str(json.dumps(trimmed_tokenizer_json(data, keep_by_scripts(data, ["cyrillic"]))))
    cyrillic = script_pattern(["cyrillic"])
    texts = [s for s in SAMPLE if cyrillic.fullmatch(s)] + ["жӂж ӂ", "Ӂ"]
    assert len(texts) > 4
    assert "<0xD3>" in original.encode("ӂ").tokens  # missing from the vocabulary: spelt in UTF-8 bytes
    assert [e.tokens for e in trimmed.encode_batch(texts)] == [e.tokens for e in original.encode_batch(texts)]
    assert trimmed.get_vocab_size() < original.get_vocab_size() - 100
