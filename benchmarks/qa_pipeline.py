"""transformers' `question-answering` pipeline as a worker process, for benchmarks/question_answering.py: run with a
Python that has transformers 4.57 (version 5 removed the pipeline). Its first stdin line is
{"checkpoint", "threads", "max_seq_len", "cases": [[question, context], ...]}; then each line "N" answers the first N
cases (N = 1: one call; more: one call of N, batch_size 32) and writes the answers as a JSON line."""

import json
import sys

import torch
import transformers

setup = json.loads(sys.stdin.readline())
torch.set_num_threads(setup["threads"])
pipe = transformers.pipeline("question-answering", model=setup["checkpoint"], device="cpu")
cases = [{"question": q, "context": c} for q, c in setup["cases"]]
print(json.dumps({"version": transformers.__version__}), flush=True)
for line in sys.stdin:
    count = int(line)
    answers = pipe(cases[0] if count == 1 else cases[:count], max_seq_len=setup["max_seq_len"], batch_size=32)
    print(json.dumps(answers), flush=True)
