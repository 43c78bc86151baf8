"""Pieces shared by the inference and tooling commands."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from ..bundle import model_bytes
from ..tasks import PAIR_TRUNCATIONS, TASKS, TRUNCATIONS, Option, taking

DATA_HELP = (
    "Evaluation text: a file, a .tsv of text<TAB>text_pair[<TAB>label] pairs, a folder of <lang>.txt (or .tsv), or "
    "<name>_text.txt + <name>_labels.txt (also one folder level down); default: the built-in multilingual sample "
    "(of pairs, for a cross-encoder or NLI model)."
)

# Options several commands take, defined once.
PRECISION = click.option(
    "--precision",
    type=click.Choice(["auto", "int8", "fp32"]),
    default="auto",
    show_default=True,
    help="Which model of the bundle: auto takes INT8 when the bundle has it.",
)
MAX_BATCH_SIZE = 65_536  # texts in one call; far above what fits a CPU's caches, below what overflows a chunk count
BATCH_SIZE = click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH_SIZE),
    default=32,
    show_default=True,
    help="Texts (their windows) run through the model together.",
)
PAIR_TRUNCATION_HELP = (
    "longest_first (the default) cuts the longer text first; only_first, only_second cut that text alone; "
    "window reads the second text in windows with the first whole in each"
)
TRUNCATION = click.option(
    "--truncation",
    type=click.Choice(tuple(dict.fromkeys(TRUNCATIONS + PAIR_TRUNCATIONS))),
    default=None,
    help="Texts over the max length: cut to the head, or read whole in windows (default: head for classification, "
    f"window otherwise). Pairs: {PAIR_TRUNCATION_HELP}.",
)


class NonEmptyPath(click.Path):
    """click.Path that refuses an empty argument: pathlib reads "" as the current folder, so `export "" OUT`
    looked for a checkpoint in "." and said ". has no config.json"."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("is empty; pass a path", param, ctx)
        return super().convert(value, param, ctx)


def size_text(path: Path) -> str:
    """A model's size on disk (graph and weights), for people."""
    return f"{model_bytes(path) / 1e6:.1f} MB" if path.is_file() else "missing"


class Numbers(click.ParamType):
    """A comma-separated list of positive integers (an option's value), refused naming the option."""

    name = "N,N,..."

    def __init__(self, maximum: int | None = None) -> None:
        self.maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            values = tuple(int(x) for x in str(value).split(","))
        except ValueError:
            self.fail(f"expected comma-separated integers, got {value!r}", param, ctx)
        if min(values) < 1 or (self.maximum is not None and max(values) > self.maximum):
            upto = "" if self.maximum is None else f" up to {self.maximum:,}"
            self.fail(f"expected positive integers{upto}, got {value!r}", param, ctx)
        return values


def require_tooling() -> None:
    """Import the export and quantize tooling, or fail with one line naming the extra it needs."""
    try:
        for module in ("mbert_edge.export", "mbert_edge.quantize.pipeline", "mbert_edge.quantize.trim"):
            importlib.import_module(module)  # trim needs regex, also of the extra
    except ImportError as exc:
        raise click.ClickException(
            f"this command needs the [export] extra ({exc.name} is missing): pip install 'mbert-edge[export]'"
        ) from exc


def _option_type(kind: str, meta: Mapping[str, Any]) -> click.ParamType:
    """The click type of a setting annotated `kind` ("int", "float", "str") with its metadata's bounds."""
    if "choices" in meta:
        return click.Choice(meta["choices"])
    if meta.get("path"):
        return click.Path(exists=True)
    low, high = meta.get("min"), meta.get("max")
    if kind == "int":
        return click.IntRange(low, high)
    return click.FloatRange(low, high, min_open=meta.get("min_open", False)) if kind == "float" else click.STRING


def settings_options(settings: type, prefix: str = "") -> Callable[[Any], Any]:
    """An option for each field of the dataclass `settings` made with `mbert_edge.settings.setting` (those with
    help text), typed from its annotation, with its default, bounds and help (after `prefix`): the settings'
    owner is the one place that holds them."""

    def decorate(command: Any) -> Any:
        for spec in reversed(dataclasses.fields(settings)):
            meta = spec.metadata
            if "help" not in meta:
                continue
            flag, kind = "--" + spec.name.replace("_", "-"), str(spec.type).split(" | ")[0]
            shown = {"default": spec.default, "help": prefix + meta["help"], "show_default": spec.default is not None}
            if kind == "bool":  # off by default: a flag; on by default: a pair, --x/--no-x
                flags = f"{flag}/--no-{flag[2:]}" if spec.default else flag
                command = click.option(flags, is_flag=True, **shown)(command)
            else:
                command = click.option(flag, type=_option_type(kind, meta), envvar=meta.get("envvar"), **shown)(command)
        return command

    return decorate


def task_options(command: Any) -> Any:
    """A flag for each option of any task's `predict`, typed from its registry entry (`mbert_edge.tasks`); None
    when not given. `task_option_refusal` refuses one the bundle's task does not take."""
    specs: dict[str, list[tuple[str, Option]]] = {}
    for task in TASKS.values():
        for name, option in task.predict_options.items():
            specs.setdefault(name, []).append((task.name, option))
    for name, given in reversed(specs.items()):
        flag = "--" + name.replace("_", "-")
        described = dict.fromkeys(option.description for _, option in given)
        if len(described) == 1:
            tasks = " and ".join(taking(name))
            help_text = f"{tasks[0].upper()}{tasks[1:]}: {next(iter(described))}."
        else:
            help_text = "; ".join(f"{task}: {option.description}" for task, option in given) + "."
        option = given[0][1]
        if bool in option.types:
            command = click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)(command)
            continue
        if list in option.types:  # repeatable; not given: None, as every other flag
            command = click.option(
                flag, name, multiple=True, callback=lambda _c, _p, value: list(value) or None, help=help_text
            )(command)
            continue
        kind: click.ParamType = (
            click.Choice(option.choices)
            if option.choices
            else click.IntRange(option.minimum)
            if int in option.types
            else click.FloatRange(option.minimum)
        )
        command = click.option(flag, name, type=kind, default=None, help=help_text)(command)
    return command


def task_option_refusal(bundle: Path, task: str, options: dict[str, Any]) -> str | None:
    """Why a per-task option given (not None) does not fit BUNDLE's task, naming the tasks it fits; else None."""
    for name, value in options.items():
        if value is not None and name not in TASKS[task].predict_options:
            flag = "--" + name.replace("_", "-")
            return f"{bundle} is a {task} bundle; {flag} applies to {' and '.join(taking(name))} bundles only"
    return None
