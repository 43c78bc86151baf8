"""Exception types: every failure a user can fix has one, with a message that says the fix."""


class MbertEdgeError(Exception):
    """Base of all mbert-edge errors; the CLI prints these as one line and exits non-zero."""


class BundleError(MbertEdgeError):
    """A bundle folder is missing, incomplete, corrupt or of the wrong task."""


class DataError(MbertEdgeError):
    """Evaluation or calibration text could not be read."""


class ExportError(MbertEdgeError):
    """A checkpoint could not be exported, or its ONNX graph does not match PyTorch."""


class QuantizeError(MbertEdgeError):
    """A quantization method or setting cannot be applied to this bundle's model."""
