"""`mbert-edge batch --ray` on a real local Ray instance (127.0.0.1, 2 CPUs), started once for the module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_cli, run_cli_in_terminal
from test_batch import BAD, EXPECTED_ERRORS, corpus

# Ray's loopback-only setting, read when ray is imported and inherited by the processes it starts.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from mbert_edge.batch import ray_predictor  # noqa: E402
from mbert_edge.batch.job import Job, run_local  # noqa: E402

pytestmark = pytest.mark.slow  # subprocesses, servers, Ray or fresh venvs: pytest -m 'not slow' skips them


@pytest.fixture(scope="module")
def ray_address():
    """A Ray instance owned by this test process, bound to 127.0.0.1, with 3 CPUs: 2 for actors, 1 for Ray
    Data's reading. The CLI runs join it by address."""
    context = ray.init(num_cpus=3, include_dashboard=False, configure_logging=False, log_to_driver=False)
    address = context.address_info["gcs_address"]
    assert address.startswith("127.0.0.1:")
    yield address
    ray.shutdown()


def assert_same_results(ours: pa.Table, theirs: pa.Table) -> None:
    """The same rows (by id) and top-k results. FP32 is batch-invariant to 1e-6, not to the bit (Ray's batches
    hold other rows, padded to other widths), and the tiny random head's three scores are near ties: compare
    every label's score, not the ranking."""
    ours, theirs = ours.sort_by("id"), theirs.sort_by("id")
    assert ours.drop_columns(["label", "score"]).equals(theirs.drop_columns(["label", "score"]))
    for a, b in zip(ours.select(["label", "score"]).to_pylist(), theirs.select(["label", "score"]).to_pylist()):
        assert (a["label"] is None) == (b["label"] is None)
        if a["label"] is not None:
            mine, local_scores = dict(zip(a["label"], a["score"])), dict(zip(b["label"], b["score"]))
            assert mine.keys() == local_scores.keys()
            assert max(abs(mine[k] - local_scores[k]) for k in mine) <= 1e-6


def assert_same_output(ours: pa.Table, theirs: pa.Table) -> None:
    """The same rows, each once, with the same results: what a resumed run must write. By id, not in order: the
    order of a group's blocks rests on Ray Data's order preservation, and a CI run saw a rerun write a group's
    two blocks the other way round (2026-12-03); not to the bit: the rows redone may meet other batch-mates in
    Ray's batches (FP32 to 1e-6, see above)."""
    assert len(ours) == len(theirs) == len(set(ours.column("id").to_pylist()))
    assert_same_results(ours, theirs)


def ray_batch(bundle: Path, folder: Path, address: str, *options: str) -> list[str]:
    """`mbert-edge batch` of folder/in into folder/ray on Ray: 2 actors x 1 thread, top 3 labels."""
    ray = ["--ray", address, "--workers", "2", "--threads-per-worker", "1", "--top-k", "3"]
    return ["batch", str(bundle), str(folder / "in"), str(folder / "ray"), *ray, *options]


def test_ray_gives_the_single_process_results(seqcls_bundle, ray_address, tmp_path):
    """3,000 rows in three files through 2 actors x 1 thread equal the single-process run, row by row (by id)."""
    table = corpus(3000)
    (tmp_path / "in").mkdir()
    for index, start in enumerate(range(0, 3000, 1000)):
        pq.write_table(table.slice(start, 1000), tmp_path / "in" / f"{index}.parquet")
    local = run_local(Job(seqcls_bundle, tmp_path / "in", tmp_path / "local", options={"top_k": 3}))
    args = ray_batch(seqcls_bundle, tmp_path, ray_address, "--part-rows", "1000")
    run = run_cli(*args)
    assert run.returncode == 0, run.stderr
    # Rows are compared by id (the order of blocks within a file rests on Ray Data's preserve_order).
    assert_same_results(*(pq.read_table(tmp_path / name) for name in ("ray", "local")))
    assert run.stdout.strip().endswith(local.line().split(";")[-1])  # the same counts of bad rows
    errors = pq.read_table(tmp_path / "ray", columns=["id", "error"]).to_pylist()
    assert {row["id"]: row["error"] for row in errors if row["error"]} == EXPECTED_ERRORS
    assert not list((tmp_path / "ray").glob(".*"))  # the staging folder is gone
    parts = len(list((tmp_path / "ray").glob("part-*.parquet")))
    again = run_cli(*args)  # a finished job is not run again
    assert again.returncode == 0 and f"(0 written, {parts} already done)" in again.stdout, again.stderr

    # As a run killed while renaming the second file's parts leaves it: file 0 done, file 1 half renamed (one
    # part garbled), file 2 not started, a staging folder. The rerun redoes files 1 and 2 only.
    out = tmp_path / "ray"
    finished = pq.read_table(out)
    (out / "_SUCCESS").unlink()
    for index in (1, 2):
        (out / f"_file-{index:05d}.done").unlink()
    for part in out.glob("part-00002-*.parquet"):
        part.unlink()
    next(out.glob("part-00001-*.parquet")).write_bytes(b"not parquet")
    (out / ".ray-staging").mkdir()
    kept = len(list(out.glob("part-00000-*.parquet")))
    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "already done)" in resumed.stdout and f", {kept} already done" in resumed.stdout, resumed.stdout
    assert "; 2,000 rows in" in resumed.stdout  # files 1 and 2 ran again, file 0 did not
    assert_same_output(pq.read_table(out), finished)  # as the uninterrupted run wrote it


def test_files_that_differ_or_are_empty(seqcls_bundle, ray_address, tmp_path):
    """JSON Lines files of one input: one empty, one with its columns in another order and an extra one. Every
    part has the input's schema (as the single-process path reads it) and the same rows and results."""
    import json

    table = corpus(600).drop_columns(["source"])
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in table.slice(0, 300).to_pylist()))
    (folder / "1.jsonl").write_text("")
    (folder / "2.jsonl").write_text(
        "".join(
            json.dumps({"note": "x", "text": r["text"], "id": r["id"]}) + "\n" for r in table.slice(300).to_pylist()
        )
    )
    local = run_local(Job(seqcls_bundle, folder, tmp_path / "local", options={"top_k": 3}))
    run = run_cli(
        "batch",
        str(seqcls_bundle),
        str(folder),
        str(tmp_path / "ray"),
        "--ray",
        ray_address,
        "--workers",
        "2",
        "--threads-per-worker",
        "1",
        "--top-k",
        "3",
    )
    assert run.returncode == 0, run.stderr
    parts = sorted((tmp_path / "ray").glob("part-*.parquet"))
    assert {p.name[:10] for p in parts} == {"part-00000", "part-00001"}  # the two files with rows
    assert {pq.read_schema(p) for p in parts} == {pq.read_schema(next((tmp_path / "local").glob("part-*")))}
    ours = pq.read_table(tmp_path / "ray")
    assert ours.column_names == ["id", "text", "label", "score", "error"] and len(ours) == local.rows == 600
    assert_same_results(ours, pq.read_table(tmp_path / "local"))


def test_small_files_run_in_groups_of_part_rows(seqcls_bundle, ray_address, tmp_path):
    """Five files of 100 rows with --part-rows 250: two groups (files 0-2, then 3-4) in one pipeline, each a unit
    of resumption named after its first file, in parts of 250 rows at most, with the single-process results."""
    table = corpus(500)
    (tmp_path / "in").mkdir()
    for index in range(5):
        pq.write_table(table.slice(100 * index, 100), tmp_path / "in" / f"{index}.parquet")
    args = ray_batch(seqcls_bundle, tmp_path, ray_address, "--part-rows", "250")
    run = run_cli(*args)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "ray"
    assert sorted(p.name for p in out.glob("_file-*")) == ["_file-00000.done", "_file-00003.done"]
    assert {p.name[:10] for p in out.glob("part-*.parquet")} == {"part-00000", "part-00003"}
    assert sorted(pq.read_metadata(p).num_rows for p in out.glob("part-*.parquet")) == [50, 200, 250]
    local = run_local(Job(seqcls_bundle, tmp_path / "in", tmp_path / "local", options={"top_k": 3}))
    assert_same_results(pq.read_table(out), pq.read_table(tmp_path / "local"))
    assert local.rows == 500
    # The second group killed before its parts were renamed in: the rerun runs files 3-4 only.
    finished = pq.read_table(out)
    (out / "_SUCCESS").unlink()
    (out / "_file-00003.done").unlink()
    for part in out.glob("part-00003-*.parquet"):
        part.unlink()
    resumed = run_cli(*args)
    assert resumed.returncode == 0 and "; 200 rows in" in resumed.stdout, resumed.stdout + resumed.stderr
    assert_same_output(pq.read_table(out), finished)


def test_progress_bar_on_ray_in_a_terminal(seqcls_bundle, ray_address, tmp_path):
    """On Ray too, a terminal shows one bar of rows done and their rate (not Ray Data's per-operator display)."""
    pq.write_table(corpus(300), tmp_path / "in.parquet")
    code, screen = run_cli_in_terminal(
        "batch",
        str(seqcls_bundle),
        str(tmp_path / "in.parquet"),
        str(tmp_path / "out"),
        "--ray",
        ray_address,
        "--workers",
        "1",
    )
    assert code == 0, screen
    assert "300/300" in screen and "rows/s" in screen and "on Ray" in screen, screen
    assert "Running Dataset" not in screen and "Progress bars disabled" not in screen and "300 rows in" in screen


def test_predictor_in_a_users_pipeline(seqcls_bundle, ray_address, tmp_path):
    """docs/batch.md's example: the helper's class in a user's own Ray Data pipeline."""
    table = corpus(200)
    Predictor = ray_predictor(seqcls_bundle, text_column="text", keep=["id"])
    refs = (
        ray.data.from_arrow(table)
        .map_batches(Predictor, batch_format="pyarrow", concurrency=1, num_cpus=1)
        .to_arrow_refs()
    )
    result = pa.concat_tables(ray.get(refs)).sort_by("id")
    pq.write_table(table, tmp_path / "in.parquet")
    expected = run_local(Job(seqcls_bundle, tmp_path / "in.parquet", tmp_path / "out", id_column="id"))
    assert expected.rows == 200
    assert result.equals(pq.read_table(tmp_path / "out"))
    assert [result.column("error")[i].as_py() for i in sorted(BAD)] == [EXPECTED_ERRORS[i] for i in sorted(BAD)]


def test_missing_ray_is_one_line(seqcls_bundle, tmp_path):
    blocker = tmp_path / "blocked" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('blocked for the test', name='ray')\n")
    pq.write_table(corpus(5), tmp_path / "in.parquet")
    run = run_cli(
        "batch",
        str(seqcls_bundle),
        str(tmp_path / "in.parquet"),
        str(tmp_path / "out"),
        "--ray",
        env={"PYTHONPATH": str(blocker.parent)},
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "Error: this needs the [ray] extra (ray is missing): pip install 'mbert-edge[ray]'"
    ]
