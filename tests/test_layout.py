"""The house rule (README, "Layout"): imports point down -- jobs (``mmrec.pipelines``) -> areas (the
top-level folders) -> core (``mmrec/``) -- never back up and never in a circle, and no package holds
more than a fifth of the library's lines. Checked on the source with ``ast``, so a new upward import
fails here before anything runs."""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AREAS = ("encoders", "graphs", "quantization", "crossdomain", "index", "rankers", "retrieval")
RANK = {"core": 0, "area": 1, "pipelines": 2, "cli": 3}


def package_dirs(root: Path) -> dict[str, Path]:
    """``mmrec.X`` -> its folder, as pyproject.toml's ``package-dir`` maps them."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    return {name: root / folder for name, folder in config["tool"]["setuptools"]["package-dir"].items()}


def modules(root: Path) -> dict[str, Path]:
    """Every module of the library: dotted name -> file."""
    dirs = package_dirs(root)
    out: dict[str, Path] = {}
    for package, folder in dirs.items():
        for f in folder.glob("*.py"):
            out[package if f.stem == "__init__" else f"{package}.{f.stem}"] = f
    return out


def layer(module: str) -> tuple[str, str]:
    """``(kind, area)`` of a module: core, one area, the jobs or the CLI."""
    parts = module.split(".")
    second = parts[1] if len(parts) > 1 else ""
    if second in AREAS:
        return "area", second
    if second == "pipelines":
        return "pipelines", "pipelines"
    if second in ("cli", "__main__"):
        return "cli", "cli"
    return "core", "core"


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING")


def imports(path: Path, known: set[str]) -> set[str]:
    """The library modules ``path`` imports, at module level or inside functions, except under
    ``if TYPE_CHECKING`` (annotations only, nothing runs)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name in known)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for a in child.names:  # `from mmrec.index import tree` names a submodule
                    sub = f"{child.module}.{a.name}"
                    found.add(sub if sub in known else child.module)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in known}


def graph(root: Path) -> dict[str, set[str]]:
    mods = modules(root)
    return {m: imports(f, set(mods)) - {m} for m, f in mods.items()}


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Imports that point up: core -> area / jobs / CLI, area -> jobs / CLI, jobs -> CLI."""
    bad = []
    for src, targets in edges.items():
        for dst in targets:
            if RANK[layer(dst)[0]] > RANK[layer(src)[0]] and src != "mmrec.__main__":
                bad.append(f"{src} -> {dst}")
    return sorted(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def package_lines(root: Path) -> dict[str, int]:
    """Lines of each top-level package and of each folder of ``mmrec/`` (its own files count as ``mmrec``)."""
    counts: dict[str, int] = defaultdict(int)
    for module, f in modules(root).items():
        kind, area = layer(module)
        key = area if kind != "core" and kind != "cli" else ("mmrec/" + module.split(".")[1] if f.parent != root / "mmrec" else "mmrec")
        counts[key] += len(f.read_text().splitlines())
    return dict(counts)


def test_imports_point_down_and_never_in_a_circle():
    edges = graph(ROOT)
    assert len(edges) > 100  # the whole library was read
    assert upward(edges) == []
    assert cycles(edges) == []


def test_no_package_holds_more_than_a_fifth_of_the_lines():
    counts = package_lines(ROOT)
    total = sum(counts.values())
    assert {name: round(n / total, 3) for name, n in counts.items() if n > 0.2 * total} == {}


@pytest.fixture()
def tiny_tree(tmp_path):
    """A three-layer library in pyproject's layout, for the checker's positive controls."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools.package-dir]\n"mmrec" = "mmrec"\n"mmrec.index" = "index"\n"mmrec.pipelines" = "pipelines"\n')
    for folder, files in {"mmrec": {"__init__.py": "", "store.py": "import numpy\n"},
                          "index": {"__init__.py": "", "tree.py": "from mmrec.store import x\n"},
                          "pipelines": {"__init__.py": "", "index.py": "from mmrec.index.tree import y\n"}}.items():
        (tmp_path / folder).mkdir()
        for name, text in files.items():
            (tmp_path / folder / name).write_text(text)
    return tmp_path


def test_a_planted_upward_import_is_found(tiny_tree):
    assert upward(graph(tiny_tree)) == [] and cycles(graph(tiny_tree)) == []
    (tiny_tree / "mmrec" / "store.py").write_text("def f():\n    from mmrec.pipelines.index import y\n")
    assert upward(graph(tiny_tree)) == ["mmrec.store -> mmrec.pipelines.index"]


def test_a_planted_cycle_is_found_but_an_annotation_import_is_not(tiny_tree):
    (tiny_tree / "index" / "base.py").write_text("from mmrec.index.tree import z\n")
    (tiny_tree / "index" / "tree.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mmrec.index.base import z\n")
    assert cycles(graph(tiny_tree)) == []
    (tiny_tree / "index" / "tree.py").write_text("from mmrec.index import base\n")
    assert cycles(graph(tiny_tree)) == [["mmrec.index.base", "mmrec.index.tree"]]


def test_ruff_is_clean():
    """pyflakes, isort, pyupgrade and bugbear rules over the repository (pyproject.toml's ``[tool.ruff]``)."""
    import shutil
    import subprocess
    import sys

    own = Path(sys.executable).with_name("ruff")  # the dev extra's, beside this interpreter
    ruff = str(own) if own.exists() else shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    done = subprocess.run([ruff, "check", "--output-format", "concise", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
