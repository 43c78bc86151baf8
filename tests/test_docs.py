"""The documentation's Python examples run, so they cannot rot: each page's ```python blocks run in order in one
namespace, in a folder where the paths they name are the test bundles. A block preceded by the line
`<!-- docs-test: skip (reason) -->` is not run (it needs a cluster or cloud storage)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
BLOCK = re.compile(r"(<!-- docs-test: skip[^>]*-->\n)?```python\n(.*?)```", re.S)
PRELUDE = {
    "texts": ["Angela Merkel besuchte Paris.", "Das Essen war großartig", "東京は日本の首都です。"],
    "long_review": "Das Essen war großartig, der Service aber langsam. " * 200,
}


def examples(page: Path) -> list[str]:
    return [code for skip, code in BLOCK.findall(page.read_text(encoding="utf-8")) if not skip]


def test_the_pages_have_examples():
    assert sum(len(examples(page)) for page in PAGES) >= 7


@pytest.mark.parametrize("page", [p for p in PAGES if examples(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(
    page,
    tmp_path,
    monkeypatch,
    seqcls_bundle,
    token_bundle,
    encoder_bundle,
    nli_bundle,
    rerank_bundle,
    mlm_bundle,
    qa_bundle,
):
    named = {
        "bundle": seqcls_bundle,
        "ner-bundle": token_bundle,
        "embedding-bundle": encoder_bundle,
        "nli-bundle": nli_bundle,
        "cross-encoder-bundle": rerank_bundle,
        "mbert-bundle": mlm_bundle,
        "qa-bundle": qa_bundle,
    }
    for name, bundle in named.items():
        (tmp_path / name).symlink_to(bundle, target_is_directory=True)
    (tmp_path / "tweets.txt").write_text("Guten Morgen\nQuel bonheur !\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    namespace = dict(PRELUDE)
    for number, code in enumerate(examples(page), start=1):
        try:
            exec(compile(code, f"{page.name} example {number}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"{page.relative_to(ROOT)}, example {number}: {type(exc).__name__}: {exc}\n{code}")
