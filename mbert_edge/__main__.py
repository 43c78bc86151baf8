"""`python -m mbert_edge` is the `mbert-edge` command."""

from .cli import main

main()
