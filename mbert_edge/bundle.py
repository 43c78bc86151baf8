"""The bundle: one folder with ONNX model(s), `tokenizer.json` and the manifest `mbert_edge.json`.

Export writes it, quantize adds to it, the runtime reads only it. This module is the single place
that knows the manifest's layout, so writers and readers cannot drift apart.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError

MANIFEST_NAME = "mbert_edge.json"
TOKENIZER_NAME = "tokenizer.json"
FORMAT_VERSION = 1
TASKS = ("sequence-classification", "token-classification", "feature-extraction")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so large models do not sit in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_file(model: str) -> str:
    """The file holding a model's weights, beside its graph (see quantize/storage.py)."""
    return model + ".data"


def model_bytes(model: str | Path) -> int:
    """A model's size on disk: its graph file and, when there is one, the weights file beside it."""
    path = Path(model)
    return sum(p.stat().st_size for p in (path, path.with_name(weights_file(path.name))) if p.is_file())


def file_record(path: str | Path) -> dict[str, Any]:
    """The manifest's entry for one bundle file: its hash and size."""
    return {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}


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


@dataclass
class Bundle:
    """A bundle folder and its parsed manifest."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> "Bundle":
        """Read and sanity-check the manifest of the bundle at `path`."""
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"bundle folder {root} does not exist; create one with `mbert-edge export MODEL {root}`")
        manifest_path = root / MANIFEST_NAME
        if not manifest_path.is_file():
            raise BundleError(f"{manifest_path} is missing: {root} is not a complete bundle; re-run `mbert-edge export`")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{manifest_path} is not valid JSON ({exc}); re-run `mbert-edge export`") from exc
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{manifest_path} has format_version {version!r}, this mbert-edge reads {FORMAT_VERSION}; "
                "re-export the bundle with this version"
            )
        if manifest.get("task") not in TASKS:
            raise BundleError(f"{manifest_path}: unknown task {manifest.get('task')!r}; expected one of {', '.join(TASKS)}")
        return cls(root, manifest)

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def models(self) -> dict[str, str]:
        """Precision name ("fp32", "int8") -> ONNX file name inside the bundle."""
        return self.manifest["models"]

    def file(self, name: str) -> Path:
        """Path of a bundle file, with a clear error when it is missing."""
        path = self.path / name
        if not path.is_file():
            raise BundleError(f"{path} is missing from the bundle; re-run `mbert-edge export` (or `quantize` for INT8 files)")
        return path

    def check_files_present(self) -> None:
        """Every file the manifest lists exists (hashes are checked only for the files a model loads:
        hashing a model it does not use would cost seconds for nothing)."""
        for name in self.manifest.get("files", {}):
            self.file(name)

    def verify_file(self, name: str) -> Path:
        """Path of a bundle file whose sha256 matches the manifest."""
        path = self.file(name)
        record = self.manifest.get("files", {}).get(name)
        if record is None:
            raise BundleError(f"{name} is not listed in {self.path / MANIFEST_NAME}; re-run `mbert-edge export`")
        if sha256_file(path) != record["sha256"]:
            raise BundleError(
                f"{path} does not match the sha256 in the manifest (corrupt or modified); "
                "re-export the bundle, or load with verify_hashes=False if you changed it on purpose"
            )
        return path

    def model_files(self, name: str) -> list[str]:
        """A model's files: its graph and, when the manifest lists one, the weights file beside it."""
        return [name] + [w for w in (weights_file(name),) if w in self.manifest.get("files", {})]

    def resolve_precision(self, precision: str) -> str:
        """Pick "int8" or "fp32": "auto" prefers INT8 when the bundle has it."""
        if precision == "auto":
            return "int8" if "int8" in self.models else "fp32"
        if precision not in self.models:
            have = ", ".join(sorted(self.models))
            hint = "; run `mbert-edge quantize` first" if precision == "int8" else ""
            raise BundleError(f"bundle {self.path} has no {precision} model (it has: {have}){hint}")
        return precision

    def save_manifest(self) -> None:
        write_json_atomic(self.path / MANIFEST_NAME, self.manifest)
