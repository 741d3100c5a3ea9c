"""Docstrings cite files of the repository: docs/papers.md (by section) and docs/file-contracts.md,
never the paper and design notes kept outside it (the two upper-case ``.md`` files this test names)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "site", "node_modules", "build", "dist"}
OUTSIDE = re.compile(r"\b(PAPERS|DESIGN)\.md\b")
CITATION = re.compile(r'docs/papers\.md,\s+"([^"]+)"')


def code_files() -> list[Path]:
    out = []
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".toml", ".cfg", ".yaml", ".yml", ".sh") or SKIP & set(path.relative_to(ROOT).parts):
            continue
        if path.name != Path(__file__).name:
            out.append(path)
    return out


def sections() -> set[str]:
    return {line[3:].strip() for line in (ROOT / "docs" / "papers.md").read_text().splitlines() if line.startswith("## ")}


def test_code_cites_no_file_outside_the_repository():
    found = [f"{p.relative_to(ROOT)}:{i}" for p in code_files() for i, line in enumerate(p.read_text().splitlines(), 1) if OUTSIDE.search(line)]
    assert not found, f"cite docs/papers.md or docs/file-contracts.md instead: {found}"


def test_papers_citations_name_existing_sections():
    known = sections()
    assert {"QARM", "MMBee", "SMES", "OneRec-V2 preference alignment"} <= known
    cited = {(p.relative_to(ROOT).as_posix(), m) for p in code_files() for m in CITATION.findall(p.read_text())}
    assert cited, "no docstring cites docs/papers.md"
    missing = sorted((f, s) for f, s in cited if s not in known)
    assert not missing, f"docs/papers.md has no such section: {missing}"


def test_outside_pattern_catches_a_planted_citation():
    papers, design = "PAPERS" + ".md", "DESIGN" + ".md"
    assert OUTSIDE.search(f'"""Swing ({papers}, QARM)."""') and OUTSIDE.search(f"see {design}")
    assert not OUTSIDE.search("see docs/papers.md and docs/file-contracts.md")
