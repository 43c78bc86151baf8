"""`mbert-edge batch` on one machine: results equal the runtime's, every format, bad rows, resumption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, run_cli_in_terminal

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pa_csv = pytest.importorskip("pyarrow.csv")

from mbert_edge import Classifier, Embedder, MbertEdgeError, TokenClassifier  # noqa: E402
from mbert_edge.batch import ray_predictor  # noqa: E402
from mbert_edge.batch.job import Job, run_local  # noqa: E402
from mbert_edge.textdata import builtin_sample  # noqa: E402

BAD = {3: None, 7: "", 11: "  \t"}  # row -> bad text
EXPECTED_ERRORS = {3: "null text", 7: "empty text", 11: "empty text"}


def corpus(rows: int) -> pa.Table:
    """`rows` real multilingual sentences (the built-in sample, repeated), ids 0.., and three bad rows."""
    sentences = [s for group in builtin_sample().texts.values() for s in group]
    texts = [BAD.get(i, sentences[i % len(sentences)]) for i in range(rows)]
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "text": pa.array(texts, pa.string()),
            "source": pa.array([f"s{i % 5}" for i in range(rows)]),
        }
    )


def good_texts(table: pa.Table) -> list[str]:
    return [t for t in table.column("text").to_pylist() if t is not None and t.strip()]


def results_of(output: Path) -> pa.Table:
    return pq.read_table(output)


def entity_spans(rows: list[list[dict]]) -> list[list[tuple]]:
    return [[(e["entity_group"], e["word"], e["start"], e["end"]) for e in row] for row in rows]


@pytest.mark.slow
def test_classification_matches_predict_and_counts_bad_rows(seqcls_bundle, tmp_path):
    table = corpus(300)
    pq.write_table(table, tmp_path / "in.parquet")
    run = run_cli(
        "batch", str(seqcls_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "out"), "--part-rows", "128"
    )
    assert run.returncode == 0, run.stderr
    assert "300 rows in 3 parts (3 written)" in run.stdout
    assert "rows with an error: 3 (empty text 2, null text 1)" in run.stdout
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == [f"part-0000{i}.parquet" for i in range(3)]
    out = results_of(tmp_path / "out")
    assert out.column_names == ["id", "text", "source", "label", "score", "error"]
    assert out.column("id").to_pylist() == list(range(300))  # input order
    assert out.schema.field("score").type == pa.float32()
    expected = iter(Classifier(seqcls_bundle).predict(good_texts(table)))
    for row in out.to_pylist():
        if row["id"] in BAD:
            assert (row["label"], row["score"], row["error"]) == (None, None, EXPECTED_ERRORS[row["id"]])
        else:
            want = next(expected)
            assert row["error"] is None and row["label"] == want["label"]
            assert row["score"] == pytest.approx(want["score"], abs=1e-6)


@pytest.mark.slow
def test_formats_folders_top_k_and_id_column(seqcls_bundle, tmp_path):
    """The same rows as JSON Lines and as a folder of two CSV files give the Parquet input's results."""
    table = corpus(120)
    pq.write_table(table, tmp_path / "in.parquet")
    with open(tmp_path / "in.jsonl", "w", encoding="utf-8") as fh:
        for row in table.to_pylist():
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (tmp_path / "csv").mkdir()
    pa_csv.write_csv(table.slice(0, 50), tmp_path / "csv" / "a.csv")
    pa_csv.write_csv(table.slice(50), tmp_path / "csv" / "b.csv")
    outputs = {}
    for name in ("in.parquet", "in.jsonl", "csv"):
        out = tmp_path / f"out-{name}"
        run = run_cli("batch", str(seqcls_bundle), str(tmp_path / name), str(out), "--top-k", "2", "--id-column", "id")
        assert run.returncode == 0, run.stderr
        outputs[name] = results_of(out)
    reference = outputs["in.parquet"]
    assert reference.column_names == ["id", "label", "score", "error"]
    assert reference.schema.field("label").type == pa.list_(pa.string())
    ranked = Classifier(seqcls_bundle).predict(good_texts(table), top_k=2)
    labels = [r for r in reference.column("label").to_pylist() if r is not None]
    assert labels == [[x["label"] for x in r] for r in ranked]
    for name in ("in.jsonl", "csv"):
        # CSV cannot tell null from empty: both are bad rows, with their own error messages
        assert outputs[name].drop_columns(["error"]).equals(reference.drop_columns(["error"])), name
    assert outputs["csv"].column("error").to_pylist()[3] == "empty text"


@pytest.mark.slow
def test_embeddings_and_entities(encoder_bundle, token_bundle, tmp_path):
    table = corpus(80)
    pq.write_table(table, tmp_path / "in.parquet")
    for bundle in (encoder_bundle, token_bundle):
        run = run_cli("batch", str(bundle), str(tmp_path / "in.parquet"), str(tmp_path / bundle.name))
        assert run.returncode == 0, run.stderr
    embedded = results_of(tmp_path / encoder_bundle.name)
    assert embedded.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    vectors = embedded.column("embedding").to_pylist()
    assert [i for i, v in enumerate(vectors) if v is None] == sorted(BAD)
    np.testing.assert_allclose(
        np.array([v for v in vectors if v is not None]), Embedder(encoder_bundle).encode(good_texts(table)), atol=1e-6
    )
    entities = [
        e
        for e, error in zip(
            *results_of(tmp_path / token_bundle.name).select(["entities", "error"]).to_pydict().values()
        )
        if error is None
    ]
    expected = TokenClassifier(token_bundle).predict(good_texts(table))
    assert entity_spans(entities) == entity_spans(expected)
    assert sum(map(len, entities)) > 0  # the random model does tag something, so the comparison has content


def test_task_options_reach_the_model(token_bundle, seqcls_bundle, tmp_path):
    """Every option of the task's `predict` is a `batch` flag too (as `predict` has them): NER's aggregation,
    also "none" (tokens, with their own columns); one the bundle's task does not take is refused in one line."""
    table = corpus(40)
    pq.write_table(table, tmp_path / "in.parquet")
    model = TokenClassifier(token_bundle)
    for aggregation in ("first", "none"):
        out = tmp_path / aggregation
        run = run_cli("batch", str(token_bundle), str(tmp_path / "in.parquet"), str(out), "--aggregation", aggregation)
        assert run.returncode == 0, run.stderr
        rows = results_of(out).select(["entities", "error"]).to_pylist()
        got = [row["entities"] for row in rows if row["error"] is None]
        expected = model.predict(good_texts(table), aggregation=aggregation)
        assert [[{k: e[k] for k in ("start", "end", "word")} for e in text] for text in got] == [
            [{k: e[k] for k in ("start", "end", "word")} for e in text] for text in expected
        ]
        key = "entity" if aggregation == "none" else "entity_group"
        assert [[e[key] for e in text] for text in got] == [[e[key] for e in text] for text in expected]
        assert sum(map(len, got)) > 0
    refused = run_cli(
        "batch", str(seqcls_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "x"), "--doc-stride", "8"
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "bundle; --doc-stride applies to question-answering bundles only" in refused.stderr


def test_non_text_column_gives_row_errors(seqcls_bundle, tmp_path):
    pq.write_table(pa.table({"text": pa.array([1, None, 3], pa.int64())}), tmp_path / "in.parquet")
    summary = run_local(Job(seqcls_bundle, tmp_path / "in.parquet", tmp_path / "out"))
    assert summary.errors == {"not text (int64)": 2, "null text": 1}
    assert results_of(tmp_path / "out").column("label").null_count == 3
    pq.write_table(pa.table({"text": pa.array([["a"], ["b"]])}), tmp_path / "lists.parquet")
    summary = run_local(Job(seqcls_bundle, tmp_path / "lists.parquet", tmp_path / "out-lists"))
    assert summary.errors == {"not text (list<element: string>)": 2}  # its kind whole, though it holds ": "

    # pandas' `category` (dictionary-encoded) and string views are text; blank files are empty ones
    words = pa.array(["Guten Morgen", "Merci", "Guten Morgen"])
    expected = [r["label"] for r in Classifier(seqcls_bundle).predict(words.to_pylist())]
    for form, column in (("category", words.dictionary_encode()), ("view", words.cast(pa.string_view()))):
        pq.write_table(pa.table({"text": column}), tmp_path / f"{form}.parquet")
        summary = run_local(Job(seqcls_bundle, tmp_path / f"{form}.parquet", tmp_path / f"out-{form}"))
        assert summary.errors == {}
        assert results_of(tmp_path / f"out-{form}").column("label").to_pylist() == expected
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.jsonl").write_text('{"text": "Merci"}\n')
    (tmp_path / "blank" / "b.jsonl").write_text("\n\n  \n")
    assert run_local(Job(seqcls_bundle, tmp_path / "blank", tmp_path / "out-blank")).rows == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--text-column", "body"], "the input has no column 'body' (it has id, text, source): pass --text-column"),
        (["--id-column", "key"], "the input has no column 'key' for --id-column"),
        (["--workers", "2"], "--workers and --threads-per-worker apply to --ray runs only"),
    ],
)
def test_argument_errors_are_one_line(seqcls_bundle, tmp_path, args, message):
    """Wrong options fail before any work, on one line, as `predict`'s do."""
    pq.write_table(corpus(5), tmp_path / "in.parquet")
    run = run_cli("batch", str(seqcls_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "out"), *args)
    assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr


@pytest.mark.slow
def test_options_the_model_refuses_fail_before_the_output_exists(seqcls_bundle, token_bundle, tmp_path):
    """An option only the model can judge (a truncation its task does not take) fails the job on one line before
    OUTPUT is made, so the corrected command starts afresh instead of being refused as another job; so does an
    OUTPUT that cannot be a folder."""
    pq.write_table(corpus(5), tmp_path / "in.parquet")
    with pytest.raises(MbertEdgeError, match="--query-column needs a cross-encoder bundle"):
        run_local(Job(seqcls_bundle, tmp_path / "in.parquet", tmp_path / "out-query", query_column="source"))
    assert not (tmp_path / "out-query").exists()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(MbertEdgeError, match="a-file is a file: choose a folder for the output"):
        run_local(Job(seqcls_bundle, tmp_path / "in.parquet", tmp_path / "a-file"))
    run = run_cli("batch", str(seqcls_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "a-file" / "out"))
    assert run.returncode == 1 and "cannot write the batch output" in run.stderr, run.stderr
    assert run.stderr.count("\n") == 1 and "choose a folder you can write to" in run.stderr
    for bundle, flag in ((seqcls_bundle, "only_first"), (token_bundle, "longest_first")):
        out = tmp_path / f"out-{flag}"
        run = run_cli("batch", str(bundle), str(tmp_path / "in.parquet"), str(out), "--truncation", flag)
        assert run.returncode == 1 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
        assert f"truncation must be one of head, window (or None for the default), got '{flag}'" in run.stderr
        assert "(an option of this batch job)" in run.stderr and not out.exists()
        fixed = run_cli("batch", str(bundle), str(tmp_path / "in.parquet"), str(out), "--truncation", "head")
        assert fixed.returncode == 0 and results_of(out).num_rows == 5, fixed.stderr


@pytest.mark.slow
@pytest.mark.parametrize("bad_line", [3, 2501])  # in pyarrow's first block, and past it (1 MB blocks)
@pytest.mark.parametrize(
    "bad, message",
    [
        ('{"text": "unclosed', "{line} is not JSON"),
        ('{"text": 5}', "{line}: its text is a number, where earlier rows have a string"),
    ],
)
def test_a_malformed_json_line_is_named_by_its_line_number(seqcls_bundle, tmp_path, bad_line, bad, message):
    """pyarrow names a 0-based row of the block it was parsing (line 2,501 was "row 1,522"), also when a
    field changes type."""
    lines = [json.dumps({"text": f"Guten Morgen {i} " + "x" * 1000}) for i in range(3000)]
    lines[bad_line - 1] = bad
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = run_cli("batch", str(seqcls_bundle), str(tmp_path / "in.jsonl"), str(tmp_path / "out"))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert message.format(line=f"in.jsonl line {bad_line}") in run.stderr, run.stderr


@pytest.mark.slow
def test_a_malformed_csv_row_is_named_by_its_file_and_line(seqcls_bundle, tmp_path):
    """pyarrow's CSV row numbers skip blank lines ("Row #2501" for line 2,502 here) and name no file."""
    lines = ["id,text"] + [f"{i},Guten Morgen {i} " + "x" * 1000 for i in range(3000)]
    lines[2501] = "2501,Guten Morgen,again"
    lines.insert(5, "")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("id,text\n1,Merci\n", encoding="utf-8")
    (tmp_path / "in" / "b.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = run_cli("batch", str(seqcls_bundle), str(tmp_path / "in"), str(tmp_path / "out"))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "b.csv line 2503: CSV parse error: Expected 2 columns, got 3" in run.stderr, run.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_rows_that_are_not_utf8_get_an_error_naming_their_line(seqcls_bundle, tmp_path, fmt):
    """An invalid byte in a row's text, or in another column the output keeps, gives that row an error naming
    the column and the file's line (a blank line, which the reader skips, still counts), in parts of 2 rows;
    the other rows get their results and the job completes."""
    rows = [
        {"id": 0, "text": "Guten Morgen", "source": "a"},
        {"id": 1, "text": "Schlecht BAD", "source": "b"},
        {"id": 2, "text": "Merci", "source": "cBAD"},
        {"id": 3, "text": "Dobré ráno", "source": "d"},
    ]
    lines = [
        json.dumps(row, ensure_ascii=False) if fmt == "jsonl" else ",".join(map(str, row.values())) for row in rows
    ]
    lines = ([] if fmt == "jsonl" else ["id,text,source"]) + lines[:1] + [""] + lines[1:]
    (tmp_path / f"in.{fmt}").write_bytes("\n".join(lines).encode("utf-8").replace(b"BAD", b"\xff") + b"\n")
    run = run_cli("batch", str(seqcls_bundle), str(tmp_path / f"in.{fmt}"), str(tmp_path / "out"), "--part-rows", "2")
    assert run.returncode == 0, run.stderr
    assert "rows with an error: 2 (not UTF-8 in source 1, not UTF-8 in text 1)" in run.stdout
    out = results_of(tmp_path / "out").to_pylist()
    header = int(fmt == "csv")  # rows 1 and 2 are on lines 3 and 4 of the JSON Lines file, after the blank one
    assert [row["error"] for row in out] == [
        None,
        f"not UTF-8 in text: in.{fmt} line {3 + header}",
        f"not UTF-8 in source: in.{fmt} line {4 + header}",
        None,
    ]
    assert (out[1]["text"], out[2]["source"]) == ("Schlecht \ufffd", "c\ufffd")  # the output is UTF-8
    expected = Classifier(seqcls_bundle).predict(["Guten Morgen", "Dobré ráno"])
    assert [(row["label"], row["score"]) for row in out if row["error"] is None] == [
        (want["label"], pytest.approx(want["score"], abs=1e-6)) for want in expected
    ]


@pytest.mark.slow
def test_a_row_that_is_not_utf8_is_located_in_csv_files_of_every_shape(seqcls_bundle, tmp_path):
    """The line named for a row that is not UTF-8 is where its record starts in CSV files with CR-only line ends,
    a quoted value spanning lines, and a gzipped file (pyarrow reads all three)."""
    import gzip

    files = {
        "cr.csv": (b"id,text\r1,hello\r2,b\xffad\r3,ok\r", 3),
        "quoted.csv": (b'id,text\n1,"two\nlines"\n\n2,b\xffad\n3,ok\n', 5),
        "zipped.csv.gz": (gzip.compress(b"id,text\n1,hello\n2,b\xffad\n3,ok\n"), 3),
        "wide.csv": (b"id,text\n1," + b"wort " * 40_000 + b"\n2,b\xffad\n3,ok\n", None),  # a field over csv's limit
    }
    for name, (content, line) in files.items():
        (tmp_path / name).write_bytes(content)
        out = tmp_path / f"out-{name}"
        run_local(Job(seqcls_bundle, tmp_path / name, out, format="csv"))
        errors = results_of(out).column("error").to_pylist()
        where = f"{name} line {line}" if line else "row 2 of the input"  # past a field it cannot read: its number
        assert errors == [None, f"not UTF-8 in text: {where}", None], name


@pytest.mark.slow
def test_truncation_reaches_the_model_and_is_kept_on_resume(token_bundle, tmp_path):
    """A text over the 128-token max length: --truncation head tags only its first window, window all of it,
    as `predict` does (on one machine, and in the Ray actors' predictor); a rerun with another truncation is
    refused, as with other settings."""
    long_text = " ".join(good_texts(corpus(40)))
    pq.write_table(pa.table({"text": [long_text, "Angela Merkel"]}), tmp_path / "in.parquet")
    model, spans = TokenClassifier(token_bundle), {}
    for truncation in ("head", "window"):
        run = run_cli(
            "batch",
            str(token_bundle),
            str(tmp_path / "in.parquet"),
            str(tmp_path / truncation),
            "--truncation",
            truncation,
        )
        assert run.returncode == 0, run.stderr
        spans[truncation] = entity_spans(results_of(tmp_path / truncation).column("entities").to_pylist())
        assert spans[truncation] == entity_spans(model.predict([long_text, "Angela Merkel"], truncation=truncation))
        predictor = ray_predictor(token_bundle, truncation=truncation)()
        assert (
            entity_spans(predictor(pq.read_table(tmp_path / "in.parquet")).column("entities").to_pylist())
            == spans[truncation]
        )
    assert max(end for *_, end in spans["head"][0]) < len(long_text) // 2 < max(end for *_, end in spans["window"][0])
    again = run_cli(
        "batch", str(token_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "window"), "--truncation", "head"
    )
    assert again.returncode == 1 and "(truncation differ)" in again.stderr


@pytest.mark.slow
def test_top_k_is_refused_on_other_tasks(encoder_bundle, tmp_path):
    pq.write_table(corpus(5), tmp_path / "in.parquet")
    run = run_cli("batch", str(encoder_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "out"), "--top-k", "2")
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert (
        "is a feature-extraction bundle; --top-k applies to sequence-classification and fill-mask and question-answering bundles only"
        in (run.stderr)
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_result_column_clash_and_foreign_output_refused(seqcls_bundle, tmp_path):
    pq.write_table(corpus(5).append_column("label", pa.array(["x"] * 5)), tmp_path / "in.parquet")
    run = run_cli("batch", str(seqcls_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "out"))
    assert run.returncode == 1 and "already has the column(s) label" in run.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    run = run_cli(
        "batch", str(seqcls_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "full"), "--id-column", "id"
    )
    assert run.returncode == 1 and "exists and is not a batch job's output" in run.stderr


@pytest.mark.slow
def test_missing_extra_is_one_line(seqcls_bundle, tmp_path):
    """Without pyarrow, `batch` asks for the extra and the other commands still work."""
    blocker = tmp_path / "blocked" / "pyarrow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('blocked for the test', name='pyarrow')\n")
    env = {"PYTHONPATH": str(blocker.parent)}
    run = run_cli("batch", str(seqcls_bundle), str(tmp_path), str(tmp_path / "out"), env=env)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "Error: this needs the [batch] extra (pyarrow is missing): pip install 'mbert-edge[batch]'"
    ]
    assert run_cli("predict", str(seqcls_bundle), "Hallo", env=env).returncode == 0


def _batch_process(bundle: Path, source: Path, output: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mbert_edge",
            "batch",
            str(bundle),
            str(source),
            str(output),
            "--part-rows",
            "100",
            "--batch-size",
            "8",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent,
    )


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_output(seqcls_bundle, tmp_path):
    """Kill a run once some parts are written; the rerun skips them and ends with the uninterrupted output."""
    pq.write_table(corpus(6000), tmp_path / "in.parquet")
    whole = run_cli(
        "batch",
        str(seqcls_bundle),
        str(tmp_path / "in.parquet"),
        str(tmp_path / "whole"),
        "--part-rows",
        "100",
        "--batch-size",
        "8",
    )
    assert whole.returncode == 0, whole.stderr
    process = _batch_process(seqcls_bundle, tmp_path / "in.parquet", tmp_path / "out")
    deadline = time.monotonic() + 120
    while len(list((tmp_path / "out").glob("part-*.parquet"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("part-*.parquet")}
    assert 3 <= len(finished) < 60, "the kill must land mid-run"
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    out = ["batch", str(seqcls_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "out"), "--part-rows", "100"]
    rerun = run_cli(*out, "--batch-size", "8")
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(finished)} already done" in rerun.stdout
    assert {name: (tmp_path / "out" / name).stat().st_mtime_ns for name in finished} == finished  # not rewritten
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind
    assert results_of(tmp_path / "out").equals(results_of(tmp_path / "whole"))
    again = run_cli(*out, "--batch-size", "16")
    assert again.returncode == 1 and "(batch_size differ)" in again.stderr


@pytest.mark.slow
def test_progress_bar_in_a_terminal(seqcls_bundle, tmp_path):
    """In a real terminal the bar is drawn (rows done, rate) and the job completes."""
    pq.write_table(corpus(200), tmp_path / "in.parquet")
    code, screen = run_cli_in_terminal("batch", str(seqcls_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "out"))
    assert code == 0, screen
    assert "200/200" in screen and "rows/s" in screen and "200 rows in" in screen


@pytest.mark.slow
def test_a_text_too_long_to_read_whole_is_its_rows_error(token_bundle, tmp_path):
    """A text over the model's max_windows (default 131,072 tokens' worth) read with the NER default, windows,
    is an error row naming the fix; the other rows get their entities and the job finishes."""
    huge = " ".join(good_texts(corpus(40))) * 600  # about 1.4 MB
    pq.write_table(pa.table({"text": ["Angela Merkel", huge, "Paris"]}), tmp_path / "in.parquet")
    run = run_cli("batch", str(token_bundle), str(tmp_path / "in.parquet"), str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    rows = results_of(tmp_path / "out").select(["entities", "error"]).to_pylist()
    assert rows[1]["entities"] is None and rows[1]["error"].startswith("longer than ")
    assert rows[1]["error"].endswith("windows of 128 tokens (the max_windows limit); pass --truncation head")
    assert [r["error"] for r in rows[::2]] == [None, None]
    assert entity_spans([r["entities"] for r in rows[::2]]) == entity_spans(
        TokenClassifier(token_bundle).predict(["Angela Merkel", "Paris"])
    )
