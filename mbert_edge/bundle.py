"""The bundle: one folder with ONNX model(s), `tokenizer.json` and the manifest `mbert_edge.json`.

Export writes it, quantize adds to it, the runtime reads only it. The typed `Manifest` below is the only
code that knows the manifest's JSON keys: writers build or update it through its fields and `Bundle.save`,
readers use its attributes, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import BundleError
from .quantization import GATE_KEYS, METHOD_SETTINGS, QuantizationConfig, option_names
from .tasks import TASKS, reads_pairs

MANIFEST_NAME = "mbert_edge.json"
TOKENIZER_NAME = "tokenizer.json"
FORMAT_VERSION = 1
BUILTIN_SAMPLE = "built-in sample"  # what the manifest records as the data of a gate run on the shipped sample

Section = TypeVar("Section")


def check_writable(folder: Path, what: str) -> None:
    """Fail at once, as one line, where `what` could not be written into `folder` (or, when it does not exist
    yet, into the nearest folder above it that does), rather than after the long work that would write it."""
    existing = Path(folder).resolve()
    while not existing.exists():
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise BundleError(
            f"cannot write {what} in {folder} ({exc.strerror or exc}); choose a folder you can write to"
        ) from exc


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so large models do not sit in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_file(model: str) -> str:
    """The file holding a model's weights, beside its graph (see export/storage.py)."""
    return model + ".data"


def model_bytes(model: str | Path) -> int:
    """A model's size on disk: its graph file and, when there is one, the weights file beside it."""
    path = Path(model)
    return sum(p.stat().st_size for p in (path, path.with_name(weights_file(path.name))) if p.is_file())


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON next to its destination, then rename: a reader never sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a bundle is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _section(kind: Any) -> Any:
    """The type a field holds when it is set: `X` for `X | None`."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(kind) if a is not type(None))
    return kind


def _holds(value: Any, kind: Any) -> bool:
    """Whether a JSON value fits a field's type (`int`, `str`, `list[str]`, `dict[str, X]`, `X | None`, ...;
    a nested section is checked as it is built)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_holds(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(_holds(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(_holds(item, args[1]) for item in value.values())
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in (str, bool, type(None)) or dataclasses.is_dataclass(kind):
        return isinstance(value, kind)
    return True  # Any, and the like


def _from_json(cls: type[Section], data: dict[str, Any]) -> Section:
    """A section dataclass from its JSON object, nested sections (also `X | None` and `dict[str, X]`)
    built recursively, each value checked against its field's type (TypeError naming the field); keys the class
    does not know (written by another version) are ignored."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        value, kind = data[f.name], _section(hints[f.name])
        if isinstance(value, dict) and isinstance(kind, type) and dataclasses.is_dataclass(kind):
            value = _from_json(kind, value)
        elif typing.get_origin(kind) is dict and dataclasses.is_dataclass(typing.get_args(kind)[1]):
            value = {k: _from_json(typing.get_args(kind)[1], v) for k, v in value.items()}
        if not _holds(value, hints[f.name]):
            kind = hints[f.name] if typing.get_args(hints[f.name]) else getattr(hints[f.name], "__name__", "")
            raise TypeError(f"{f.name} is {value!r:.40}, not of type {kind}")
        values[f.name] = value
    return cls(**values)


def _to_json(section: Any) -> dict[str, Any]:
    """The JSON object of a section dataclass; optional fields left at None are omitted."""
    return {k: v for k, v in dataclasses.asdict(section).items() if v is not None}


@dataclass
class SpecialToken:
    token: str
    id: int


@dataclass
class LanguageParity:
    sentences: int
    max_abs_diff: float
    mean_abs_diff: float


@dataclass
class Parity:
    """|ONNX - PyTorch| on the parity text: overall and per language."""

    max_abs_diff: float
    languages: dict[str, LanguageParity]


@dataclass
class ExportRecord:
    opset: int
    atol: float
    parity: Parity


@dataclass
class Optimization:
    """What ONNX Runtime's BERT optimizer fused, whether the fusion contract holds, and the fused graph's parity."""

    fused_operators: dict[str, int]
    contract_holds: bool
    last_layer_cls_row_only: bool
    parity: Parity


@dataclass
class Source:
    model: str
    path: str
    architecture: str
    config_sha256: str


@dataclass
class FileRecord:
    sha256: str
    bytes: int

    @classmethod
    def of(cls, path: str | Path) -> FileRecord:
        return cls(sha256_file(path), os.path.getsize(path))


OPTIONAL_SECTIONS = ("quantization", "trim", "runtime")  # absent from the JSON until a command adds them


@dataclass
class Quantization:
    """The manifest's record of the last `quantize`: its settings, what the method chose, and the gate's verdict."""

    config: QuantizationConfig
    cpu_flags: list[str]
    passed: bool
    overall: dict[str, Any]  # the accuracy report's overall figures
    report_files: list[str]
    chosen: dict[str, Any] = field(default_factory=dict)  # the method's own record (reduce_range, fp32_layers, ...)

    def to_json(self) -> dict[str, Any]:
        config = self.config.options()
        gate = {key: config.pop(key) for key in GATE_KEYS}
        config["data"] = config["data"] or BUILTIN_SAMPLE
        return {
            **config,
            **self.chosen,
            "batch_invariant": self.config.batch_invariant,
            "cpu_flags": self.cpu_flags,
            "passed": self.passed,
            "gate": gate,
            "report": {"overall": self.overall, "files": self.report_files},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Quantization:
        method = data.get("method", QuantizationConfig.method)
        common = {f.name for f in dataclasses.fields(QuantizationConfig)} - {"method", "settings"}
        settings = {k: v for k, v in data.items() if k in common | set(option_names(METHOD_SETTINGS[method]))}
        settings.update(data.get("gate", {}))
        if settings.get("data") == BUILTIN_SAMPLE:
            settings["data"] = None
        options = {name for kind in METHOD_SETTINGS.values() for name in option_names(kind)}
        known = common | options | {"method", "batch_invariant", "cpu_flags", "passed", "gate", "report"}
        return cls(
            QuantizationConfig.of(method, checked=False, **settings),
            data.get("cpu_flags", []),
            data["passed"],
            data["report"]["overall"],
            data["report"]["files"],
            {k: v for k, v in data.items() if k not in known},
        )


@dataclass
class Trim:
    """How the vocabulary was trimmed (`mbert-edge trim`)."""

    mode: str  # "scripts" or "corpus"
    scripts: list[str]
    kept: int = 0
    original_vocab_size: int = 0
    original_embedding_rows: int = 0
    min_count: int | None = None  # corpus mode only, from here on
    sentences: int | None = None
    holdout: float | None = None
    coverage: dict[str, dict[str, float]] | None = None


@dataclass
class RuntimeSettings:
    """Saved by `bench --save`: the runtime's default thread count, and the CPU it was measured on."""

    intra_op_threads: int
    measured_on: str


@dataclass
class Manifest:
    """`mbert_edge.json`, typed. `labels` is id order (JSON: {"0": label}); `pooling` the mode (JSON: {"mode": ...})."""

    task: str
    labels: list[str] | None
    problem_type: str | None
    max_length: int
    inputs: list[str]
    outputs: list[str]
    pooling: str | None
    special_tokens: dict[str, SpecialToken]
    vocab_size: int
    embedding_rows: int
    hidden_size: int
    num_attention_heads: int
    num_hidden_layers: int
    models: dict[str, str]
    source: Source
    versions: dict[str, str]
    export: ExportRecord
    optimization: Optimization | None
    files: dict[str, FileRecord] = field(default_factory=dict)
    quantization: Quantization | None = None
    trim: Trim | None = None
    runtime: RuntimeSettings | None = None
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format_version": self.format_version}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "labels" and value is not None:
                value = {str(i): label for i, label in enumerate(value)}
            elif f.name == "pooling" and value is not None:
                value = {"mode": value}
            elif isinstance(value, Quantization):
                value = value.to_json()
            elif dataclasses.is_dataclass(value):
                value = _to_json(value)
            elif f.name in ("special_tokens", "files"):
                value = {k: _to_json(v) for k, v in value.items()}
            if value is not None or f.name not in OPTIONAL_SECTIONS:
                data.setdefault(f.name, value)
        return data

    @property
    def reads_pairs(self) -> bool:
        """Whether the model is made to read pairs of texts (a cross-encoder's or an NLI head): `tasks.reads_pairs`."""
        return reads_pairs(self.task, self.labels)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: Path) -> Manifest:
        """Parse the manifest's JSON, or raise BundleError naming `where` and the fix."""
        if not isinstance(data, dict):
            raise BundleError(f"{where} is not a JSON object; re-run `mbert-edge export`")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{where} has format_version {version!r}, this mbert-edge reads {FORMAT_VERSION}; "
                "re-export the bundle with this version"
            )
        if not isinstance(data.get("task"), str) or data["task"] not in TASKS:
            raise BundleError(f"{where}: unknown task {data.get('task')!r}; expected one of {', '.join(TASKS)}")
        if TASKS[data["task"]].has_labels and not data.get("labels"):
            raise BundleError(f"{where} names no labels for its {data['task']} head; re-run `mbert-edge export`")
        try:
            labels, quantization = data.get("labels"), data.get("quantization")
            return _from_json(
                cls,
                {
                    **data,
                    "labels": None if labels is None else [labels[str(i)] for i in range(len(labels))],
                    "pooling": (data.get("pooling") or {}).get("mode"),
                    "quantization": Quantization.from_json(quantization) if quantization else None,
                },
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise BundleError(
                f"{where} lacks or garbles a field ({type(exc).__name__}: {exc}); re-run `mbert-edge export`"
            ) from exc


@dataclass
class Bundle:
    """A bundle folder and its parsed manifest."""

    path: Path
    manifest: Manifest

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        """Read and check the manifest of the bundle at `path`."""
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"bundle folder {root} does not exist; create one with `mbert-edge export MODEL {root}`")
        manifest_path = root / MANIFEST_NAME
        if not manifest_path.is_file():
            raise BundleError(
                f"{manifest_path} is missing: {root} is not a complete bundle; re-run `mbert-edge export`"
            )
        try:
            data = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{manifest_path} is not valid JSON ({exc}); re-run `mbert-edge export`") from exc
        return cls(root, Manifest.from_json(data, manifest_path))

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def models(self) -> dict[str, str]:
        """Precision name ("fp32", "int8") -> ONNX file name inside the bundle."""
        return self.manifest.models

    def file(self, name: str) -> Path:
        """Path of a bundle file, with a clear error when it is missing or lies outside the bundle's folder."""
        path = self.path / name
        if not path.resolve().is_relative_to(self.path.resolve()):
            raise BundleError(
                f"{self.path / MANIFEST_NAME} names {name}, outside the bundle's folder; a bundle's "
                "files live in it: re-run `mbert-edge export`"
            )
        if not path.is_file():
            raise BundleError(
                f"{path} is missing from the bundle; re-run `mbert-edge export` (or `quantize` for INT8 files)"
            )
        return path

    def check_files_present(self) -> None:
        """Every file the manifest lists exists (hashes are checked only for the files a model loads:
        hashing a model it does not use would cost seconds for nothing)."""
        for name in self.manifest.files:
            self.file(name)

    def verify_file(self, name: str) -> Path:
        """Path of a bundle file whose sha256 matches the manifest."""
        path = self.file(name)
        record = self.manifest.files.get(name)
        if record is None:
            raise BundleError(f"{name} is not listed in {self.path / MANIFEST_NAME}; re-run `mbert-edge export`")
        if sha256_file(path) != record.sha256:
            raise BundleError(
                f"{path} does not match the sha256 in the manifest (corrupt or modified); "
                "re-export the bundle, or load with verify_hashes=False if you changed it on purpose"
            )
        return path

    def model_files(self, name: str) -> list[str]:
        """A model's files: its graph and, when the manifest lists one, the weights file beside it."""
        return [name] + [w for w in (weights_file(name),) if w in self.manifest.files]

    def resolve_precision(self, precision: str) -> str:
        """Pick "int8" or "fp32": "auto" prefers INT8 when the bundle has it."""
        if precision == "auto":
            return "int8" if "int8" in self.models else "fp32"
        if precision not in self.models:
            have = ", ".join(sorted(self.models))
            hint = "; run `mbert-edge quantize` first" if precision == "int8" else ""
            raise BundleError(f"bundle {self.path} has no {precision} model (it has: {have}){hint}")
        return precision

    def record_files(self, names: list[str]) -> None:
        """Hash and list these files (already in the folder) in the manifest."""
        for name in names:
            self.manifest.files[name] = FileRecord.of(self.path / name)

    def save(self) -> None:
        """Write the manifest (atomically)."""
        write_json_atomic(self.path / MANIFEST_NAME, self.manifest.to_json())
