"""Every error type mbert-edge raises on purpose, each with a message that says what is wrong and the fix.

    MbertEdgeError                the base: the CLI prints it as one line and exits 1
    ├── BundleError               a bundle folder is missing, incomplete, corrupt or of the wrong task
    ├── DataError                 evaluation, calibration or batch input text could not be read
    ├── ExportError               a checkpoint could not be exported, or its graph does not match PyTorch
    ├── FusionError               the fused graph lacks operators the architecture must fuse into
    ├── QuantizeError             a quantization setting cannot be applied to this bundle's model
    ├── GateError                 the INT8 model disagrees with FP32 beyond the gate; the bundle keeps FP32
    ├── TrimError                 a vocabulary trim cannot be carried out
    └── RequestError              `mbert-edge serve`: an HTTP answer other than 200, sent as one-line JSON

Arguments of the wrong type or value raise Python's TypeError or ValueError, naming the argument; a text that cannot
be read in windows raises WindowError, a ValueError that says which of its two reasons it is.
"""


class MbertEdgeError(Exception):
    """Base of all mbert-edge errors; the CLI prints these as one line and exits non-zero."""


class BundleError(MbertEdgeError):
    """A bundle folder is missing, incomplete, corrupt or of the wrong task."""


class DataError(MbertEdgeError):
    """Evaluation, calibration or batch input text could not be read."""


class ExportError(MbertEdgeError):
    """A checkpoint could not be exported, or its ONNX graph does not match PyTorch."""


class FusionError(MbertEdgeError):
    """The fused graph lacks operators an L-layer model of its architecture must fuse into."""


class QuantizeError(MbertEdgeError):
    """A quantization method or setting cannot be applied to this bundle's model."""


class GateError(MbertEdgeError):
    """The INT8 model disagrees with the float model beyond the threshold; the bundle keeps FP32 only."""


class TrimError(MbertEdgeError):
    """A trim request that cannot be carried out (unknown script, a BPE vocabulary)."""


class RequestError(MbertEdgeError):
    """An HTTP answer other than 200, sent as one-line JSON `{"error": message, "error_type": error_type}`."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type = status, error_type


class WindowError(ValueError):
    """A text, or a pair, that cannot be read in the model's windows: `no_room` when one text of a pair leaves the
    other no room (no more tokens than consecutive windows share, or none at all under "only_first" /
    "only_second"; the fix is in the message: shorten that text, lower the stride, or cut both), else more windows
    than `max_windows` (the fix is the caller's: the head, a cut, another limit)."""

    def __init__(self, message: str, no_room: bool = False) -> None:
        super().__init__(message)
        self.no_room = no_room
