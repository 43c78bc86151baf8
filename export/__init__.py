"""Export side of mbert-edge (installed as `mbert_edge.export`): PyTorch/transformers -> ONNX bundle.

Needs the `[export]` extra (torch, transformers, onnx); the runtime never imports this package.
"""

from .pipeline import export_bundle

__all__ = ["export_bundle"]
