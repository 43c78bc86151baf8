"""`mbert-edge export`: checkpoint -> ONNX + tokenizer -> parity proof -> bundle, written atomically."""

from __future__ import annotations

import shutil
from importlib.metadata import version
from pathlib import Path

import onnxruntime as ort
from tokenizers import Tokenizer

from mbert_edge.bundle import TOKENIZER_NAME, Bundle, ExportRecord, Manifest, Optimization, Parity, Source, sha256_file
from mbert_edge.errors import ExportError
from mbert_edge.progress import Progress
from mbert_edge.runtime import Runner
from mbert_edge.runtime.runner import session_options
from mbert_edge.tasks import Task
from mbert_edge.textdata import TextSet, builtin_sample, load_textset, with_masks

from .checkpoint import checked_labels, inspect, load_model
from .fusion import contract_gaps, fuse
from .graph import ExportWrapper, export_onnx
from .parity import parity_report
from .staging import check_output, staged_folder
from .storage import store_model
from .tokenizer import build_tokenizer

MODEL_FILE = "model.onnx"
VERSIONED = ("mbert-edge", "torch", "transformers", "onnx", "onnxruntime", "tokenizers", "numpy")


def library_versions() -> dict[str, str]:
    return {name: version(name) for name in VERSIONED}


def parity_texts(data: TextSet | None, task: Task) -> TextSet:
    """The built-in multilingual sample (and its sample of pairs of texts, for a task that takes pairs; for question
    answering its questions with contexts alone), plus the user's `--data` when given."""
    texts = builtin_sample().texts
    if task.questions:
        texts = {f"questions/{k}": v for k, v in builtin_sample(questions=True).texts.items()}
    elif task.pairs:
        texts.update({f"pairs/{k}": v for k, v in builtin_sample(pairs=True).texts.items()})
    if data is not None:
        texts.update({f"data:{k}": v for k, v in data.texts.items()})
    return TextSet(texts)


def _max_length(requested: int | None, limit: int, tokenizer_max: int | None) -> int:
    if requested is not None:
        if not 3 <= requested <= limit:  # two special tokens and at least one of text
            raise ExportError(f"--max-length {requested} is outside 3..{limit} (the model's position embeddings)")
        return requested
    return min(limit, tokenizer_max or limit)


def export_bundle(
    model: str,
    output_dir: str | Path,
    task: str = "auto",
    max_length: int | None = None,
    opset: int = 17,
    atol: float = 1e-4,
    data: str | Path | None = None,
    labels: list[str] | None = None,
    force: bool = False,
    optimize: bool = True,
    allow_partial_fusion: bool = False,
    progress: Progress | None = None,
) -> Bundle:
    """Export `model` (local checkpoint folder or hub id) with its task head into a bundle at `output_dir`,
    then (unless `optimize=False`) fuse the graph with ONNX Runtime's BERT optimizer; `model.onnx` is then
    the fused graph.

    Fails with ExportError, leaving nothing at `output_dir`, when the ONNX outputs (of the exported and of
    the fused graph) differ from PyTorch's by more than `atol` on any language of the parity text, and with
    FusionError when fusion is incomplete (unless `allow_partial_fusion`).
    """
    progress = progress or Progress(enabled=False)
    output = Path(output_dir).resolve()
    source = Path(model)  # a local checkpoint folder, which the bundle must not replace; a hub id never exists
    check_output(output, force, source)
    extra = load_textset(data) if data is not None else None  # read before work
    checkpoint = inspect(model, task)
    labels = checked_labels(checkpoint, labels)
    masked = checkpoint.task.masked
    tokenizer, special, tokenizer_max = build_tokenizer(checkpoint.path, checkpoint.config, mask=masked)
    texts = parity_texts(extra, checkpoint.task)
    if masked:  # fill-mask's graph reads only the mask tokens' rows: each text holds one
        texts = with_masks(texts, special["mask"].token)
    if tokenizer.get_vocab_size() > checkpoint.config.vocab_size:
        raise ExportError(
            f"{checkpoint.path}'s tokenizer has {tokenizer.get_vocab_size()} tokens but its model "
            f"{checkpoint.config.vocab_size} embedding rows: the tokenizer is not the model's"
        )
    length = _max_length(max_length, checkpoint.family.max_positions(checkpoint.config), tokenizer_max)
    with progress.step(f"loading {checkpoint.path.name} as {checkpoint.head_class}"):
        torch_model = load_model(checkpoint, labels)
    if checkpoint.task.questions and torch_model.config.num_labels != 2:
        raise ExportError(
            f"{checkpoint.path}'s question-answering head has {torch_model.config.num_labels} outputs, not 2 (start "
            "and end): it is not a span head; export it with the task its head was trained for"
        )
    input_names = checkpoint.family.inputs(torch_model.config)
    wrapper = ExportWrapper(torch_model, checkpoint, input_names, special["mask"].id if masked else None).eval()
    config = torch_model.config

    def checked_parity(graph: Path, label: str) -> Parity:
        session = ort.InferenceSession(str(graph), session_options(), providers=["CPUExecutionProvider"])
        runner = Runner(session, Tokenizer.from_str(tokenizer.to_str()), length, special["pad"].id, graph.name)
        with progress.bar(f"validating {label} graph against PyTorch", len(texts)) as advance:
            parity = parity_report(wrapper, runner, texts, advance=advance)
        if not parity.max_abs_diff <= atol:
            worst = max(parity.languages.items(), key=lambda kv: kv[1].max_abs_diff)
            raise ExportError(
                f"{label} ONNX output differs from PyTorch by {parity.max_abs_diff:.3g} (> --atol {atol:g}; "
                f"worst language {worst[0]}); nothing was written. Check the checkpoint, or raise --atol if expected"
            )
        return parity

    with staged_folder(output, force, source) as staging:
        tokenizer.save(str(staging / TOKENIZER_NAME))
        # The traced and fused graphs live in a folder of their own: over protobuf's 2 GiB (xlm-roberta-large)
        # the exporter writes each weight to a file of its own beside the graph.
        work = staging / "intermediate"
        work.mkdir()
        graph = work / "traced.onnx"
        with progress.step(f"tracing to ONNX (opset {opset})"):
            export_onnx(wrapper, checkpoint, graph, opset)
        parity = checked_parity(graph, "exported")
        optimization = None
        if optimize:
            fused = work / "fused.onnx"
            with progress.step("fusing with ONNX Runtime's BERT optimizer"):
                contract = checkpoint.family.fusion_contract(config.num_hidden_layers, checkpoint.task.name)
                counts, cls_row = fuse(
                    graph,
                    fused,
                    config.num_attention_heads,
                    config.hidden_size,
                    config.num_hidden_layers,
                    allow_partial_fusion,
                    contract=contract,
                )
            graph = fused
            gaps = contract_gaps(counts, contract)
            if gaps:
                progress.note(f"warning: partial fusion ({', '.join(gaps)}); the graph is slower than it could be")
            optimization = Optimization(counts, not gaps, cls_row, checked_parity(graph, "fused"))
        with progress.step("storing the model"):
            model_files = store_model(graph, staging / MODEL_FILE)
            shutil.rmtree(work)
        task = checkpoint.task.name
        bundle = Bundle(
            staging,
            Manifest(
                task=task,
                labels=[config.id2label[i] for i in range(config.num_labels)]
                if checkpoint.task.has_labels  # a masked LM scores the vocabulary, a QA head spans
                else None,
                problem_type=getattr(config, "problem_type", None),
                max_length=length,
                inputs=input_names,
                outputs=[checkpoint.task.output_name],
                pooling=checkpoint.pooling,
                special_tokens=special,
                vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
                embedding_rows=config.vocab_size,
                hidden_size=config.hidden_size,
                num_attention_heads=config.num_attention_heads,
                num_hidden_layers=config.num_hidden_layers,
                models={"fp32": MODEL_FILE},
                source=Source(
                    model, str(checkpoint.path), checkpoint.architecture, sha256_file(checkpoint.path / "config.json")
                ),
                versions=library_versions(),
                export=ExportRecord(opset, atol, parity),
                optimization=optimization,
            ),
        )
        bundle.record_files([*model_files, TOKENIZER_NAME])
        bundle.save()
    return Bundle.open(output)
