"""`mbert-edge serve`: an HTTP inference server with token-budget micro-batching (needs the [serve] extra)."""
