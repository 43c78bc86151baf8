"""Atomic bundle writing, shared by `export` and `trim`: assemble in a hidden sibling folder, rename into
place only when complete, so a failed or interrupted run leaves nothing half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mbert_edge.bundle import check_writable
from mbert_edge.errors import BundleError


def check_output(output: Path, force: bool, source: Path | None = None) -> None:
    """Refuse a non-empty `output` unless `force`, and always an `output` that is or holds `source` (what the
    bundle is made from: replacing `output` would delete it). Checked before any long work starts."""
    output = output.resolve()
    if source is not None and source.exists() and (source.resolve() == output or output in source.resolve().parents):
        raise BundleError(
            f"{output} holds the input {source}: writing the bundle there would delete it; choose another folder"
        )
    if output.exists() and any(output.iterdir()) and not force:
        raise BundleError(f"{output} exists and is not empty; choose another folder or pass --force")
    check_writable(output.parent, "the bundle")


@contextmanager
def staged_folder(output: str | Path, force: bool, source: Path | None = None) -> Iterator[Path]:
    """Yield an empty folder beside `output`; when the block succeeds it replaces `output` (checked first by
    `check_output`)."""
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    check_output(output, force, source)
    _remove_abandoned(output)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f"{_staging_prefix(output)}{os.getpid()}-"))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp makes it owner-only; a bundle is meant to be shared
        if output.exists() and any(output.iterdir()):
            trash = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.old-"))
            output.rename(trash / output.name)
            staging.rename(output)
            shutil.rmtree(trash)
        else:
            if output.exists():
                output.rmdir()
            staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _staging_prefix(output: Path) -> str:
    return f".{output.name}.partial-"


def _remove_abandoned(output: Path) -> None:
    """Remove `output`'s staging folders whose process is gone: a SIGKILL or a power cut runs no cleanup. The
    staging folder's name carries its process id; a folder of a live process (another run) is left alone."""
    prefix = _staging_prefix(output)
    for folder in output.parent.glob(f"{prefix}*"):
        pid = folder.name[len(prefix) :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
