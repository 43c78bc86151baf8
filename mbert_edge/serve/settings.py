"""What `mbert-edge serve` is started with: each setting's default, bounds and help text in one place, from which
the command's options are made (`cli/serve.py`). No Starlette here: the CLI reads it without the [serve] extra."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import mbert_edge

from ..settings import setting

if TYPE_CHECKING:
    from ..runtime import TaskModel

# ONNX Runtime's intra-op threads not spinning after each run: in a server they would take the cores from the
# event loop (benchmarks/README.md, "Figures behind the defaults").
SERVER_SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}


@dataclass(frozen=True)
class ServerSettings:
    """What `mbert-edge serve` was started with (its options, same names)."""

    bundle: str
    precision: str = "auto"
    max_batch_tokens: int = setting(
        512,
        "A batch holds at most this many tokens (each text's windows at their bucket lengths), and each model run "
        "within it at most this many padded tokens. At least the bundle's max length.",
        min=1,
    )
    max_batch_size: int = setting(32, "A batch holds at most this many texts.", min=1)
    max_wait_ms: float = setting(
        0.0,
        "A batch that is not full waits until its oldest text has waited this long. 0: it starts as soon as the "
        "model is free (texts arriving meanwhile form the next batch).",
        min=0,
    )
    concurrent_batches: int = setting(
        2,
        "Batches run at once, sharing the model and its threads: while one batch's threads wait for each other, "
        "another keeps the cores busy. 1: one batch at a time.",
        min=1,
    )
    max_concurrent_requests: int = setting(512, "Above this many requests in flight, answer 429 at once.", min=1)
    max_input_texts: int = setting(256, "Most texts in one request (more: 422).", min=1)
    max_input_tokens: int = setting(
        131_072,
        "Most tokens in one request, counted as the model runs them (each text's windows at their bucket "
        "lengths; more: 422). The default takes 256 texts of 512 tokens.",
        min=1,
    )
    max_body_bytes: int = setting(2_000_000, "Largest request body (larger: 413).", min=1)
    intra_op_threads: int | None = setting(
        None,
        "ONNX Runtime threads of each worker's session (default: the bundle's `bench --save` figure, else the "
        "usable cores). With --workers N, keep N x threads within the cores.",
        min=1,
    )
    api_key: str | None = setting(
        None,
        "Require 'Authorization: Bearer KEY' on every route but /health (401 otherwise); also read from "
        "MBERT_EDGE_API_KEY. TLS is the job of a proxy in front.",
        envvar="MBERT_EDGE_API_KEY",
    )
    public_metrics: bool = setting(False, "With --api-key: let /metrics answer without the key too.")
    request_timeout: float = setting(
        10.0,
        "Seconds a request's headers, and then its body, may take to arrive (408 after). The model's own time is "
        "not counted; a request holds a concurrency slot only once its body is read.",
        min=0,
        min_open=True,
    )
    max_header_bytes: int = setting(
        64 * 1024, "Largest request line plus headers (larger: 431 and the connection closes).", min=1024
    )
    graceful_timeout: float = setting(
        30.0,
        "On SIGTERM, seconds to finish the requests in flight before the server stops anyway.",
        min=0,
        min_open=True,
    )

    def load(self) -> TaskModel:
        """The bundle's model, loaded as the server runs it. `max_batch_tokens` also caps each session run's
        padded tokens: the runtime sorts a batch by length and runs it in pieces padded to their own bucket, far
        faster than one piece padded to its longest text (benchmarks/README.md, "Figures behind the defaults")."""
        model = mbert_edge.load(
            self.bundle,
            precision=self.precision,
            max_batch_tokens=self.max_batch_tokens,
            intra_op_threads=self.intra_op_threads,
            session_config=SERVER_SESSION_CONFIG,
        )
        # A text the token budget admits is read whole, whatever the runtime's default window limit (set before
        # the model serves anything).
        model.runner.max_windows = self.max_input_tokens // model.runner.window_step + 2
        return model
