"""The tasks a bundle can hold, one registry entry each: the transformers head it is exported from, what its graph
outputs, the options its `predict` takes (and the values they accept), the JSON shape of one text's result (the
server answers it and publishes it), the columns `batch` adds to each row, the server routes that answer it, and
how the accuracy gate judges its INT8 model. Standard library only, so every part (export, quantize, the runtime,
serve, batch, the CLI) reads the same entry. Adding a task is its runtime class (a `TaskModel` in
`mbert_edge/runtime/`) plus one entry here."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import RequestError

if TYPE_CHECKING:
    from .runtime.model import TaskModel

TRUNCATIONS = ("head", "window")  # the first window of a long text, or all of it in overlapping windows
# How a pair of texts is cut to the max length (the tokenizers' strategies): tokens from the longer text first,
# or from one text alone; or the second text read in windows, the first whole in each.
PAIR_TRUNCATIONS = ("longest_first", "only_first", "only_second", "window")
AGGREGATIONS = ("none", "simple", "first", "max", "average")  # how token classification's tokens become entities


def json_type(value: Any) -> str:
    """The JSON name of a parsed JSON value's type."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class Option:
    """An option of `predict` as a request sends it: its JSON types (a bool is not an int here), whether null is
    allowed, and for the published schema the values the runtime accepts (`choices`, or integers from `minimum`)
    and a description. The values themselves are checked by the runtime, whose ValueError is the answer."""

    types: tuple[type, ...]
    nullable: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    description: str = ""

    def json_schema(self) -> dict[str, Any]:
        """This option as a JSON Schema (OpenAPI 3.1)."""
        names = {int: "integer", str: "string", bool: "boolean", float: "number", list: "array"}
        schema: dict[str, Any] = {"type": [names[t] for t in self.types] + (["null"] if self.nullable else [])}
        if list in self.types:
            schema["items"] = {"type": "string"}  # the options that take lists take lists of strings
        if self.choices:
            schema["enum"] = [*self.choices, *([None] if self.nullable else [])]
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        return {**schema, "description": self.description} if self.description else schema

    def check(self, name: str, value: Any) -> Any:
        """`value` if its JSON type fits, else RequestError (422)."""
        if value is None and self.nullable:
            return value
        if int in self.types and isinstance(value, float) and value.is_integer():
            return int(value)  # JSON has one number type: 2.0 is the integer 2 (as JSON Schema reads it)
        if (isinstance(value, bool) and bool not in self.types) or not isinstance(value, self.types):
            expected = " or ".join(t.__name__ for t in self.types) + (" or null" if self.nullable else "")
            raise RequestError(422, "validation", f"{name} must be {expected}, got {json_type(value)}")
        return value


TRUNCATION = Option(
    (str,),
    choices=TRUNCATIONS,
    description="head: the first window; window: the whole text in overlapping windows (default: the task's)",
)
PAIR_TRUNCATION = Option(
    (str,),
    choices=PAIR_TRUNCATIONS,
    description="longest_first (the default): the longer text is cut first; only_first, only_second: that text "
    "alone; window: the second text in overlapping windows",
)

CONTEXT_TRUNCATION = Option(
    (str,), choices=("window",), description="window (the only one): each context read whole in overlapping windows"
)


@dataclass(frozen=True)
class Column:
    """A column `batch` adds to each row. `kind`: string, float32, int64, entities or vector (Arrow types, in
    `mbert_edge.batch.results`); `key`: the field of a result that fills it (None: the whole result)."""

    name: str
    kind: str
    key: str | None = None


@dataclass(frozen=True)
class Task:
    """One task: `name` is what the manifest, `export --task` and the server's /info say."""

    name: str
    runtime_class: str  # "module:Class" of its runtime class, imported when first asked for
    head: str  # the transformers class that carries its head, after the architecture's prefix ("Bert" + head)
    output_name: str  # the graph's output
    output_axes: dict[int, str]  # the output's dynamic axes, as the ONNX export names them
    labelled: bool  # results are labels: the gate counts top-1 agreement with FP32; else it takes cosines
    labels_texts: bool  # a label per whole text: --data folders may hold gold labels (<label>.txt)
    pooled: bool  # one vector per text, pooled inside the graph as the checkpoint's sentence-transformers says
    predict_options: dict[str, Option]  # predict's own options, beyond batch_size and truncation
    result: dict[str, Any]  # the JSON Schema of one text's result, as `predict` returns it
    summary: str  # what a result is, in a few words (the server's published API)
    columns: tuple[Column, ...]  # what `batch` adds to each row (and "error")
    routes: tuple[str, ...] = field(default=())  # the server's inference routes for it, beyond /tokenize
    pairs: bool = False  # `predict` also takes pairs of texts, (text, text_pair)
    # The graph scores only the mask tokens' positions, gathered inside it (fill-mask): its output rows are those
    # positions in row-major order, the manifest names the mask token, and evaluation texts need one.
    masked: bool = False
    # Extractive question answering: inputs are (question, context) pairs, the context read in overlapping windows;
    # the graph's output is a (start, end) logit pair per token, results are answer spans, the built-in sample is
    # questions with contexts, and the gate compares INT8's answers with FP32's.
    questions: bool = False

    @property
    def has_labels(self) -> bool:
        """Whether its results are labels the manifest names (a classifier's head), not a vocabulary or spans."""
        return self.labelled and not self.masked and not self.questions

    @property
    def gate_option(self) -> str:
        """The quantize option that sets this task's gate."""
        return "--min-agreement" if self.labelled else "--min-cosine"

    @property
    def request_options(self) -> dict[str, Option]:
        """The options a request to its /predict routes may give."""
        return {**self.predict_options, "truncation": TRUNCATION}

    @property
    def pair_options(self) -> dict[str, Option]:
        """The options a request of pairs of texts to its /predict routes may give (where it takes pairs)."""
        return {**self.predict_options, "truncation": CONTEXT_TRUNCATION if self.questions else PAIR_TRUNCATION}

    def model_class(self) -> type[TaskModel]:
        """The runtime class that loads a bundle of this task."""
        module, name = self.runtime_class.split(":")
        cls: type[TaskModel] = getattr(importlib.import_module(module), name)
        return cls


PREDICTION = {
    "type": "object",
    "required": ["label", "score"],
    "additionalProperties": False,
    "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
}
ENTITY = {
    "type": "object",
    "required": ["score", "word", "start", "end"],
    "properties": {
        "entity_group": {"type": "string"},
        "entity": {"type": "string"},
        "score": {"type": "number"},
        "index": {"type": "integer"},
        "word": {"type": "string"},
        "start": {"type": "integer"},
        "end": {"type": "integer"},
    },
}

SEQUENCE_CLASSIFICATION = Task(
    "sequence-classification",
    "mbert_edge.runtime.classifier:Classifier",
    "ForSequenceClassification",
    "logits",
    {0: "batch"},
    labelled=True,
    labels_texts=True,
    pooled=False,
    predict_options={
        "top_k": Option(
            (int,),
            nullable=True,
            minimum=1,
            description="labels per text, best first (default 1; null in a request: all)",
        )
    },
    result={"anyOf": [PREDICTION, {"type": "array", "items": PREDICTION}]},
    summary="labels and scores (the text-classification pipeline's)",
    columns=(Column("label", "string", "label"), Column("score", "float32", "score")),
    routes=("/predict", "/rerank", "/zero-shot"),
    pairs=True,
)
TOKEN_CLASSIFICATION = Task(
    "token-classification",
    "mbert_edge.runtime.token_classifier:TokenClassifier",
    "ForTokenClassification",
    "logits",
    {0: "batch", 1: "sequence"},
    labelled=True,
    labels_texts=False,
    pooled=False,
    predict_options={
        "aggregation": Option((str,), choices=AGGREGATIONS, description="how tokens become entities (default simple)")
    },
    result={"type": "array", "items": ENTITY},
    summary="entities with character offsets",
    columns=(Column("entities", "entities"),),
    routes=("/predict", "/ner"),
)
FILL = {
    "type": "object",
    "required": ["score", "token", "token_str", "sequence"],
    "properties": {
        "score": {"type": "number"},
        "token": {"type": "integer"},
        "token_str": {"type": "string"},
        "sequence": {"type": "string"},
    },
}
FILL_MASK = Task(
    "fill-mask",
    "mbert_edge.runtime.fill_mask:FillMask",
    "ForMaskedLM",
    "logits",
    {0: "masks"},
    labelled=True,  # the gate counts top-1 token agreement with FP32 (the manifest holds no labels: the vocabulary)
    labels_texts=False,
    pooled=False,
    predict_options={
        "top_k": Option((int,), minimum=1, description="tokens per mask, best first (default 5)"),
        "targets": Option((list, str), nullable=True, description="score only these tokens (a list, or one token)"),
    },
    result={
        "anyOf": [
            {"type": "array", "items": FILL},
            {"type": "array", "items": {"type": "array", "items": FILL}},
        ]
    },
    summary="the likeliest tokens for each mask token (the fill-mask pipeline's)",
    columns=(Column("fills", "fills"),),
    routes=("/predict", "/fill-mask"),
    masked=True,
)
ANSWER = {
    "type": "object",
    "required": ["score", "start", "end", "answer"],
    "additionalProperties": False,
    "properties": {
        "score": {"type": "number"},
        "start": {"type": "integer"},
        "end": {"type": "integer"},
        "answer": {"type": "string"},
    },
}
QUESTION_ANSWERING = Task(
    "question-answering",
    "mbert_edge.runtime.question_answerer:QuestionAnswerer",
    "ForQuestionAnswering",
    "logits",
    {0: "batch", 1: "sequence"},
    labelled=True,  # the gate counts answers equal to FP32's (exact match), and reports their token F1
    labels_texts=False,
    pooled=False,
    predict_options={
        "top_k": Option((int,), minimum=1, description="answers per question, best first (default 1)"),
        "max_answer_len": Option((int,), minimum=1, description="most tokens in an answer (default 15)"),
        "doc_stride": Option(
            (int,),
            minimum=0,
            description="tokens shared by consecutive windows of a long context (default: half the window, at most 128)",
        ),
        "max_question_len": Option(
            (int,), minimum=1, description="a longer question is cut to this many tokens (default 64)"
        ),
        "handle_impossible_answer": Option(
            (bool,), description="allow the empty answer (start = end = 0) when it scores best (default false)"
        ),
    },
    result={"anyOf": [ANSWER, {"type": "array", "items": ANSWER}]},
    summary="answer spans with character offsets into the context (the question-answering pipeline's)",
    columns=(
        Column("answer", "string", "answer"),
        Column("score", "float32", "score"),
        Column("start", "int64", "start"),
        Column("end", "int64", "end"),
    ),
    routes=("/predict", "/answer"),
    pairs=True,
    questions=True,
)
FEATURE_EXTRACTION = Task(
    "feature-extraction",
    "mbert_edge.runtime.embedder:Embedder",
    "Model",
    "embeddings",
    {0: "batch"},
    labelled=False,
    labels_texts=False,
    pooled=True,
    predict_options={"normalize": Option((bool,), description="unit vectors (default true)")},
    result={"type": "array", "items": {"type": "number"}},
    summary="one vector per text",
    columns=(Column("embedding", "vector"),),
    routes=("/embed", "/v1/embeddings"),
)

RELEVANCE_COLUMNS = (Column("score", "float32"),)  # `batch --query-column`: each (query, document) row's relevance

TASKS: dict[str, Task] = {
    task.name: task
    for task in (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION, FEATURE_EXTRACTION, FILL_MASK, QUESTION_ANSWERING)
}


ENTAILMENT, CONTRADICTION = "entail", "contradict"  # how NLI labels start (the zero-shot pipeline's rule)


def reads_pairs(task: str, labels: list[str] | None) -> bool:
    """Whether a model of `task` with these labels is made to read pairs of texts, as its head shows: one relevance
    logit (a cross-encoder) or a label naming entailment (NLI). Quantize then calibrates and gates on pairs."""
    names = labels or []
    if TASKS[task].questions:
        return True
    return TASKS[task].pairs and (len(names) == 1 or any(name.lower().startswith(ENTAILMENT) for name in names))


def serving(route: str) -> list[str]:
    """The tasks whose servers answer `route`."""
    return [task.name for task in TASKS.values() if route in task.routes]


def taking(option: str) -> list[str]:
    """The tasks whose `predict` takes `option`."""
    return [task.name for task in TASKS.values() if option in task.predict_options]
