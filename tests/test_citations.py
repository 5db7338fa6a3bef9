"""Citations in the project's files point at documents that are in the repository.

Modules once cited a design document that is not part of the project; they cite docs/model.md,
docs/strategies.md or docs/architecture.md instead, by section name, and those sections exist.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
OLD = "DES" + "IGN"          # (spelt apart so that this file does not cite it)
SEARCHED = ("lbbench", "strategies", "tests", "docs", "README.md")
SUFFIXES = {".py", ".md", ".toml", ".txt"}
NOT_YET = ()


def project_files():
    for top in SEARCHED:
        p = ROOT / top
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES)
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            if "__pycache__" not in rel and not rel.startswith(NOT_YET):
                yield rel, f.read_text(errors="replace")


def test_no_citation_of_a_document_outside_the_repository():
    pattern = re.compile(rf"\b{OLD}\b")
    hits = [f"{rel}:{n}" for rel, text in project_files()
            for n, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_the_scan_sees_the_files_it_should():
    rels = {rel for rel, _ in project_files()}
    assert {"README.md", "docs/architecture.md", "lbbench/model/scenario.py", "strategies/least_load.py",
            "tests/test_citations.py", "lbbench/engine/kernel.py"} <= rels


def _sections(doc: str) -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#+ (.+)$", (ROOT / doc).read_text(), re.M)}


def test_cited_sections_exist():
    """`docs/X.md, "Section"` anywhere in the project names a heading of docs/X.md."""
    cite = re.compile(r'(docs/[a-z_]+\.md), "([^"]+)"')
    found = []
    for rel, text in project_files():
        for doc, section in cite.findall(re.sub(r"\s+", " ", text)):
            found.append((rel, doc, section))
    assert found, "no section citations found: the pattern is wrong"
    missing = [f"{rel}: {doc}, {section!r}" for rel, doc, section in found
               if not (ROOT / doc).is_file() or section not in _sections(doc)]
    assert missing == []


def test_paths_in_the_architecture_document_exist():
    text = (ROOT / "docs" / "architecture.md").read_text()
    paths = set(re.findall(r"`((?:lbbench|tests|strategies|docs)/[\w/.]+\.(?:py|md|json))`", text))
    assert len(paths) > 20
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []
