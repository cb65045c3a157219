"""The Python examples of README.md and of every page under docs/ run as written (except those marked as needing
the network); every page is in the site's navigation, and the pages' links to each other lead somewhere."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [(page, i, block) for page in PAGES
          for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))]
OFFLINE = [b for b in BLOCKS if "needs network" not in b[2]]


def test_docs_have_offline_examples():
    assert len(OFFLINE) >= 8 and len(BLOCKS) > len(OFFLINE)
    assert any(page.name == "README.md" for page, _, _ in OFFLINE)


@pytest.mark.parametrize("page, index, block", OFFLINE,
                         ids=[f"{p.relative_to(ROOT)}:{i}" for p, i, _ in OFFLINE])
def test_doc_example_runs(page, index, block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a block writes lands here
    namespace = {}
    exec(compile(block, f"{page.relative_to(ROOT)} python block {index}", "exec"), namespace)
    assert namespace  # the block defined names; its own asserts checked the results


def _nav_pages(entries) -> set[str]:
    pages = set()
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages |= _nav_pages(value) if isinstance(value, list) else {value}
    return pages


def test_every_page_is_in_the_navigation_and_every_link_leads_somewhere():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = ROOT / "docs"
    pages = {str(p.relative_to(docs)) for p in docs.rglob("*.md")}
    assert _nav_pages(config["nav"]) == pages
    for page in [ROOT / "README.md", *(docs / p for p in pages)]:
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", page.read_text()):
            if not target.startswith(("http://", "https://", "mailto:")):
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}"
