"""Find and load a BERT-family checkpoint: a local folder, or a hub id when the network allows it."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbert_edge.errors import ExportError
from mbert_edge.tasks import FEATURE_EXTRACTION, TASKS, Task

from .tasks import ARCHITECTURE_TASKS, ARCHITECTURES, POOLING_MODES, Architecture

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass
class Checkpoint:
    """A checkpoint folder with its parsed config, its architecture and the task chosen for export."""

    path: Path
    config: Any  # transformers.PretrainedConfig
    family: Architecture
    task: Task
    pooling: str | None

    @property
    def head_class(self) -> str:
        """The transformers class that carries the task's head."""
        return self.family.heads[self.task.name]

    @property
    def architecture(self) -> str:
        return (getattr(self.config, "architectures", None) or ["?"])[0]


def resolve_path(model: str) -> Path:
    """A local folder as is; a hub id through the local cache or the network, else one clear error."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ExportError(f"{model} is a file; pass the checkpoint folder that holds config.json")
    if not HUB_ID.match(model) or model.startswith("."):
        raise ExportError(f"checkpoint folder {model} does not exist; pass a folder with config.json and weights")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.bin"]))
    except Exception as exc:  # offline, unknown id, gated: all end the same way for the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"'{model}' is not a local folder and could not be fetched from the Hugging Face hub ({reason[:120]}); "
            "download the checkpoint elsewhere and pass its local folder"
        ) from exc


def _pooling_mode(path: Path) -> str:
    """Pooling of a sentence-transformers folder (its Pooling module's config), mean by default."""
    pooling_dir = "1_Pooling"
    modules = path / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text(encoding="utf-8")):
            if module.get("type", "").endswith("Pooling"):
                pooling_dir = module.get("path", pooling_dir)
    config_file = path / pooling_dir / "config.json"
    if not config_file.is_file():
        return "mean"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    for mode in POOLING_MODES:
        key = "pooling_mode_cls_token" if mode == "cls" else f"pooling_mode_{mode}_tokens"
        if config.get(key):
            return mode
    raise ExportError(f"{config_file}: only {', '.join(POOLING_MODES)} pooling is supported")


def inspect(model: str, task: str = "auto") -> Checkpoint:
    """Read the checkpoint's config, check it is a BERT-family encoder and settle the task."""
    from transformers import AutoConfig

    path = resolve_path(model)
    if not (path / "config.json").is_file():
        raise ExportError(f"{path} has no config.json; pass a Hugging Face checkpoint folder")
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as exc:
        raise ExportError(f"{path / 'config.json'} could not be read ({exc})") from exc
    architectures = getattr(config, "architectures", None) or []
    if config.model_type not in ARCHITECTURES:
        found = architectures[0] if architectures else config.model_type
        raise ExportError(
            f"{path} is a {found} (model_type '{config.model_type}'); mbert-edge exports the encoders of "
            f"model_type {', '.join(ARCHITECTURES)}"
        )
    heads = _trained_heads(config)
    known = list(heads.values())
    if task == "auto":
        if not known:
            raise ExportError(
                f"cannot pick a task for architecture {architectures or 'unknown'}; pass --task ({', '.join(TASKS)})"
            )
        task = known[0]
    if task not in TASKS:
        raise ExportError(f"unknown task '{task}'; choose one of auto, {', '.join(TASKS)}")
    if known and known[0] != task and FEATURE_EXTRACTION.name not in (known[0], task):  # one head for another
        warnings.warn(
            f"{path} is a {next(iter(heads))}; --task {task} exports it with a {task} head that was not trained as one",
            stacklevel=2,
        )
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ExportError(
            f"{path} has no weights ({' or '.join(WEIGHT_FILES[::2])}); pass a complete checkpoint folder"
        )
    pooling = _pooling_mode(path) if TASKS[task].pooled else None
    return Checkpoint(path, config, ARCHITECTURES[config.model_type], TASKS[task], pooling)


def _trained_heads(config: Any) -> dict[str, str]:
    """The checkpoint's head classes that mbert-edge knows (its `architectures`), each with its task."""
    return {a: ARCHITECTURE_TASKS[a] for a in getattr(config, "architectures", None) or [] if a in ARCHITECTURE_TASKS}


def checked_labels(checkpoint: Checkpoint, labels: list[str] | None) -> list[str] | None:
    """`--labels` stripped, or an ExportError: they name a classification head's outputs, each once, and as
    many as a trained head of the task has."""
    if labels is None:
        return None
    labels = [label.strip() for label in labels]
    if not checkpoint.task.has_labels:
        raise ExportError(f"--labels names a classification head's outputs; a {checkpoint.task.name} export has none")
    if not all(labels) or len(set(labels)) != len(labels):
        raise ExportError(f"--labels must be distinct, non-empty names; got {','.join(labels)!r}")
    trained = [a for a, task in _trained_heads(checkpoint.config).items() if task == checkpoint.task.name]
    if trained and checkpoint.config.num_labels != len(labels):
        raise ExportError(
            f"{checkpoint.path}'s {trained[0]} head has {checkpoint.config.num_labels} outputs but "
            f"--labels names {len(labels)}; name each output, in order"
        )
    return labels


def load_model(checkpoint: Checkpoint, labels: list[str] | None = None) -> Any:
    """The PyTorch model with its task head, in eval mode, with eager attention (fusable by ONNX Runtime)."""
    import torch
    import transformers

    if not any((checkpoint.path / n).is_file() for n in WEIGHT_FILES[:2]):
        warnings.warn(
            f"{checkpoint.path} has only pickle weights (pytorch_model.bin): load only checkpoints you trust, "
            "and prefer safetensors",
            stacklevel=2,
        )
    extra: dict[str, Any] = {}
    verbosity = transformers.logging.get_verbosity()
    if labels:
        extra = {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)},
        }
        # A new head: seeded, so an export repeats exactly; its weights are missing from the checkpoint by
        # design, so transformers' load report (a "MISSING" table) would only alarm.
        torch.manual_seed(0)
        transformers.logging.set_verbosity_error()
    head_class = getattr(transformers, checkpoint.head_class)
    try:
        model = head_class.from_pretrained(checkpoint.path, attn_implementation="eager", **extra)
    except Exception as exc:
        raise ExportError(f"could not load {checkpoint.path} as {checkpoint.head_class}: {exc}") from exc
    finally:
        transformers.logging.set_verbosity(verbosity)
    return model.eval()
