"""transformers' `question-answering` pipeline on checkpoints, run in a venv with transformers 4.57 (version 5
removed that pipeline): reads {"models": [{"checkpoint", "max_seq_len", "cases": [{"question", "context",
"options"}]}]} as JSON on stdin, writes the pipeline's results, a list per model, as JSON on stdout (one process
for every model: transformers is imported once)."""

import json
import sys

import transformers


def answers(request: dict) -> list:
    tokenizer = transformers.AutoTokenizer.from_pretrained(request["checkpoint"])
    for role, token in request.get("special_tokens", {}).items():  # a RoBERTa folder names none: as the real ones have
        setattr(tokenizer, f"{role}_token", token)
    if "model_input_names" in request:  # as XLM-R's own tokenizer class has them: no token types
        tokenizer.model_input_names = request["model_input_names"]
    pipe = transformers.pipeline("question-answering", model=request["checkpoint"], tokenizer=tokenizer, device="cpu")
    return [
        pipe(question=case["question"], context=case["context"], max_seq_len=request["max_seq_len"], **case["options"])
        for case in request["cases"]
    ]


models = json.load(sys.stdin)["models"]
json.dump({"version": transformers.__version__, "results": [answers(m) for m in models]}, sys.stdout)
