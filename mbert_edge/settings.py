"""Settings fields that carry their command-line help: a settings dataclass is then the one place that holds a
setting's default, bounds and help, and the CLI makes its options from it (`cli.common.settings_options`)."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def setting(default: Any, help: str, **bounds: Any) -> Any:
    """A dataclass field with its help text and, for its option, `min`, `max`, `min_open`, `choices`, `path`
    (an existing file or folder) or `envvar`."""
    return field(default=default, metadata={"help": help, **bounds})
