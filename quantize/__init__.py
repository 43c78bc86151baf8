"""Optimisation and quantisation tooling (installed as `mbert_edge.quantize`): graph fusion and INT8."""
