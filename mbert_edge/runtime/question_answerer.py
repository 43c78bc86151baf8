"""Extractive question answering: the span of a context that answers a question, in the conventions of the HF
question-answering pipeline (its scores, its word-aligned character offsets, its merging of one answer found in
several windows). A context of any length is read in overlapping windows, the question whole in each; the windows
of many questions run together through the length-bucketed runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tokenizers import Encoding

from ..errors import WindowError
from ..tasks import QUESTION_ANSWERING
from .model import PerText, TaskModel
from .textinput import Pair, TextInput, as_text_list, check_count, encodable

Answer = dict[str, Any]
MAX_QUESTION_LEN = 64  # tokens of a question kept (the pipeline's default)
MASKED_LOGIT = -10000.0  # what the pipeline puts in place of a logit outside the context before its softmax


def answer_tokens(encoding: Encoding) -> np.ndarray:
    """Which of a window's tokens may bound an answer: its context's, and its first ([CLS], the "no answer"
    position, which some models score)."""
    allowed = np.array([sequence == 1 for sequence in encoding.sequence_ids])
    allowed[0] = True
    return allowed


def span_probabilities(allowed: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) probabilities of a window's tokens: a softmax over the `allowed` ones (`answer_tokens`), every
    other token masked out, as the pipeline computes them."""
    masked = np.where(allowed[:, None], logits.astype(np.float64), MASKED_LOGIT)
    probabilities = np.exp(masked - masked.max(axis=0))
    probabilities /= probabilities.sum(axis=0)
    return probabilities[:, 0], probabilities[:, 1]


def best_span(encoding: Encoding, logits: np.ndarray, max_answer_len: int = 15) -> tuple[int, int]:
    """The (start token, end token) of a window's likeliest answer, (0, 0) for none: what the accuracy gate
    compares."""
    allowed = answer_tokens(encoding)
    spans = best_spans(allowed, *span_probabilities(allowed, logits), 10, max_answer_len)
    return spans[0][:2] if spans else (0, 0)


def best_spans(
    allowed: np.ndarray, start: np.ndarray, end: np.ndarray, count: int, max_answer_len: int
) -> list[tuple[int, int, float]]:
    """The `count` likeliest (start token, end token, probability) spans of a window, best first: spans between
    `allowed` tokens (the context, or the [CLS] alone) no longer than `max_answer_len` tokens, scored start x end
    probability."""
    start, end = start.copy(), end.copy()
    start[0] = end[0] = 0.0  # [CLS] is the "no answer" span, scored apart (handle_impossible_answer)
    scores = np.tril(np.triu(np.outer(start, end)), min(max_answer_len, start.size) - 1).ravel()
    if count < scores.size:
        best = np.argpartition(-scores, count - 1)[:count]
        best = best[np.argsort(-scores[best], kind="stable")]
    else:
        best = np.argsort(-scores, kind="stable")
    starts, ends = np.unravel_index(best, (start.size, end.size))
    kept = allowed[starts] & allowed[ends]
    return [(int(s), int(e), float(scores[flat])) for s, e, flat in zip(starts[kept], ends[kept], best[kept])]


def char_span(encoding: Encoding, start: int, end: int) -> tuple[int, int]:
    """The context's characters from the start of `start`'s word to the end of `end`'s: an answer never begins or
    ends inside a word (the pipeline's `align_to_words`); a token outside words ([CLS]) keeps its own offsets."""
    try:
        first, last = encoding.token_to_word(start), encoding.token_to_word(end)
        if first is None or last is None:
            raise LookupError
        first_chars = encoding.word_to_chars(first, sequence_index=1)
        last_chars = encoding.word_to_chars(last, sequence_index=1)
        if first_chars is None or last_chars is None:
            raise LookupError
        return first_chars[0], last_chars[1]
    except (LookupError, TypeError, ValueError):
        return encoding.offsets[start][0], encoding.offsets[end][1]


class QuestionAnswerer(TaskModel):
    """Answer questions from contexts with an extractive question-answering bundle (a `...ForQuestionAnswering`
    checkpoint: XQuAD, MLQA, TyDi QA fine-tunes).

    >>> qa = QuestionAnswerer("qa-bundle/")
    >>> qa.answer("Where does Wolfgang live?", "My name is Wolfgang and I live in Berlin.")
    {'score': 0.92, 'start': 34, 'end': 40, 'answer': 'Berlin'}
    """

    task = QUESTION_ANSWERING.name
    probe: TextInput = ("What is this?", "mbert-edge")

    def answer(
        self,
        question: str | Sequence[str],
        context: str | Sequence[str],
        top_k: int = 1,
        max_answer_len: int = 15,
        doc_stride: int | None = None,
        max_question_len: int = MAX_QUESTION_LEN,
        handle_impossible_answer: bool = False,
        batch_size: int = 32,
    ) -> Answer | list[Answer] | list[list[Answer]]:
        """The answer to `question` in `context`, or one per question where either is a list (one context for many
        questions, or a context per question): see `predict`."""
        for name, value in (("question", question), ("context", context)):
            if isinstance(value, (bytes, bytearray)) or not isinstance(value, Sequence):
                raise TypeError(f"{name} must be a str or a sequence of str, got {type(value).__name__}")
        many = [not isinstance(x, str) for x in (question, context)]
        questions = list(question) if many[0] else [question] * (len(context) if many[1] else 1)
        contexts = list(context) if many[1] else [context] * len(questions)
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions for {len(contexts)} contexts: give one context per question")
        pairs: list[Any] = list(zip(questions, contexts))  # checked by `predict`, naming a wrong one's index
        return self.predict(
            pairs if any(many) else pairs[0],
            top_k=top_k,
            max_answer_len=max_answer_len,
            doc_stride=doc_stride,
            max_question_len=max_question_len,
            handle_impossible_answer=handle_impossible_answer,
            batch_size=batch_size,
        )

    def predict(
        self,
        texts: TextInput | Sequence[TextInput],
        top_k: int = 1,
        max_answer_len: int = 15,
        doc_stride: int | None = None,
        max_question_len: int = MAX_QUESTION_LEN,
        handle_impossible_answer: bool = False,
        batch_size: int = 32,
        truncation: str | None = None,
    ) -> Answer | list[Answer] | list[list[Answer]]:
        """For each (question, context) pair, `{"score", "start", "end", "answer"}`: the context's characters
        `start:end`, whole words, at most `max_answer_len` tokens; `top_k` of them best first as a list where
        `top_k` > 1. A context longer than the window is read in windows sharing `doc_stride` tokens (default: half
        the window, at most 128); an answer found in several windows counts once, its scores summed (as the
        pipeline). A question longer than `max_question_len` tokens is cut to them. With
        `handle_impossible_answer`, the empty answer (`start` = `end` = 0) competes, scored by the [CLS] position."""
        for name, value in (
            ("top_k", top_k),
            ("max_answer_len", max_answer_len),
            ("max_question_len", max_question_len),
        ):
            check_count(name, value)
        doc_stride = self.doc_stride(doc_stride)
        if not isinstance(handle_impossible_answer, bool):
            raise TypeError(f"handle_impossible_answer must be a bool, got {type(handle_impossible_answer).__name__}")
        if truncation not in (None, "window"):
            raise ValueError(
                f"question answering reads a context in windows: truncation must be 'window', got {truncation!r}"
            )
        items, single = as_text_list(texts, pairs=True)
        if any(isinstance(item, str) for item in items):
            raise TypeError("question answering reads (question, context) pairs, not texts alone")
        pairs = [self.cut_question(pair, max_question_len) for pair in items if not isinstance(pair, str)]

        def answered(items: list[Pair], per_text: PerText) -> list[Any]:
            return [
                self._answers(context, windows, outputs, top_k, max_answer_len, handle_impossible_answer)
                for (_, context), (windows, outputs) in zip(items, per_text)
            ]

        results: Answer | list[Answer] | list[list[Answer]] = self._call(
            pairs[0] if single else pairs, batch_size, "window", answered, doc_stride
        )
        return results

    def window_error(self, item: TextInput, options: Mapping[str, Any] | None = None) -> WindowError | None:
        """Why `predict` with `options` would refuse the (question, context) pair `item` (its question cut to
        `max_question_len`, its context read in windows sharing `doc_stride` tokens), None when it would not."""
        if isinstance(item, str):
            raise TypeError("question answering reads (question, context) pairs, not texts alone")
        options = options or {}
        pair = self.cut_question(item, options.get("max_question_len", MAX_QUESTION_LEN))
        return self.runner.window_error(pair, self.doc_stride(options.get("doc_stride")))

    def doc_stride(self, doc_stride: int | None = None) -> int:
        """`doc_stride`, checked, or the default: half the window, at most 128 tokens (the pipeline's)."""
        if doc_stride is None:
            return min(self.max_length // 2, 128)
        return self.runner.pair_stride(doc_stride, "doc_stride")

    def cut_question(self, pair: Pair, max_question_len: int = MAX_QUESTION_LEN) -> Pair:
        """`pair` with its question cut to its first `max_question_len` tokens, as `predict` reads it."""
        check_count("max_question_len", max_question_len)
        question, context = pair
        if len(question) <= max_question_len:  # a token holds at least one character
            return pair
        tokens = self.tokenizer.encode(encodable(question), add_special_tokens=False)  # one code point for one
        if len(tokens.ids) <= max_question_len:
            return pair
        return question[: tokens.offsets[max_question_len - 1][1]], context

    def _answers(
        self,
        context: str,
        windows: list[Encoding],
        outputs: list[np.ndarray],
        top_k: int,
        max_answer_len: int,
        impossible: bool,
    ) -> Answer | list[Answer]:
        found: dict[str, Answer] = {}  # by lower-cased answer: one answer in several windows counts once
        null_score = 1_000_000.0
        for encoding, logits in zip(windows, outputs):
            allowed = answer_tokens(encoding)
            start, end = span_probabilities(allowed, logits)
            null_score = min(null_score, float(start[0] * end[0]))
            for first, last, score in best_spans(allowed, start, end, 2 * top_k + 10, max_answer_len):
                begin, finish = char_span(encoding, first, last)
                text = context[begin:finish]
                if text.lower() in found:
                    found[text.lower()]["score"] += score
                else:
                    found[text.lower()] = {"score": score, "start": begin, "end": finish, "answer": text}
        answers = list(found.values())
        if impossible:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        best = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return best[0] if top_k == 1 else best
