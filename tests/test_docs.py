"""The README and every docs/ page run as written, and the site builds without a warning.

Each page's ``bash`` and ``python`` blocks run in order in a fresh folder of their own: shell blocks
through ``bash -euo pipefail`` with the venv's ``mmrec`` on PATH, Python blocks with ``exec``. A block
preceded by the line ``<!-- docs-test: skip -->`` is not run (several nodes, GPUs, long benchmarks).

Start-up of a ``mmrec`` process is mostly ``import torch`` (seconds on a busy 2-core machine), paid
once per command. So the ``mmrec`` on PATH forwards each call to a fork server that imported
``mmrec.cli`` and its heavy dependencies once; the child runs ``mmrec.cli.main(argv)`` with the
caller's folder, environment and stdin/stdout/stderr and returns its exit code. Set
``MMREC_DOCS_FORKSERVER=0`` to run the installed console script instead.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
SKIP = "<!-- docs-test: skip -->"
FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
RUNNABLE = {"bash": "shell", "sh": "shell", "shell": "shell", "python": "python", "py": "python"}
BLOCK_TIMEOUT_S = 300


def blocks(page: Path) -> list[tuple[str, str, int, bool]]:
    """(kind, code, line, skipped) of every shell / Python block of a page, in order."""
    text = page.read_text()
    out = []
    for match in FENCE.finditer(text):
        kind = RUNNABLE.get(match.group(1).lower())
        if kind is None:
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        out.append((kind, match.group(2), text.count("\n", 0, match.start()) + 1, before == SKIP))
    return out


# --------------------------------------------------------------------------------------------------
# the fork server behind the `mmrec` on PATH


def _serve(path: str) -> None:
    """Accept calls on a Unix socket; fork a child per call that runs ``mmrec.cli.main``."""
    import torch  # noqa: F401

    import mmrec.cli  # noqa: F401  the heavy imports, done once, before any fork
    import mmrec.pipelines  # noqa: F401

    for name in ("faiss", "transformers", "open_clip", "torch_geometric", "pyarrow.parquet", "webdataset"):
        try:
            __import__(name)
        except ImportError:
            pass
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    while True:
        conn, _ = server.accept()
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _child(conn, json.loads(message), fds)
        conn.close()
        for fd in fds:
            os.close(fd)


def _child(conn: socket.socket, call: dict, fds: list[int]) -> None:
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(call["cwd"])
        os.environ.clear()
        os.environ.update(call["env"])
        sys.argv = ["mmrec", *call["argv"]]
        conn.sendall(f"{os.getpid()}\n".encode())
        from mmrec.cli import main

        try:
            code = main(call["argv"])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            conn.sendall(f"{code}\n".encode())
        finally:
            os._exit(code or 0)


CLIENT = """#!{python}
import json, os, signal, socket, sys
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect({path!r})
call = {{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}
socket.send_fds(conn, [json.dumps(call).encode()], [0, 1, 2])
reader = conn.makefile()
pid = int(reader.readline())
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, lambda s, f: os.kill(pid, s))
line = reader.readline()
sys.exit(int(line) if line.strip() else 1)
"""


@pytest.fixture(scope="module")
def mmrec_bin(tmp_path_factory):
    """A folder whose ``mmrec`` runs the venv's ``mmrec.cli.main`` (through the fork server)."""
    folder = tmp_path_factory.mktemp("bin")
    venv_bin = Path(sys.executable).parent
    if os.environ.get("MMREC_DOCS_FORKSERVER", "1") == "0" or not hasattr(socket, "send_fds"):
        yield venv_bin
        return
    path = str(folder / "mmrec.sock")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    server = subprocess.Popen([sys.executable, __file__, "--serve", path], env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    while not os.path.exists(path):
        assert server.poll() is None and time.monotonic() < deadline, "the mmrec fork server did not start"
        time.sleep(0.1)
    shim = folder / "mmrec"
    shim.write_text(CLIENT.format(python=sys.executable, path=path))
    shim.chmod(0o755)
    yield folder
    os.killpg(server.pid, signal.SIGTERM)
    server.wait()


def run_page(page: Path, workdir: Path, bin_dir: Path, monkeypatch, capsys) -> str:
    """Run a page's blocks in order in ``workdir``; returns what the Python blocks printed."""
    workdir.mkdir(parents=True, exist_ok=True)
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{venv_bin}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "MMREC_DOCS_TEST": "1"}
    monkeypatch.chdir(workdir)
    printed = []
    for kind, code, line, skipped in blocks(page):
        if skipped:
            continue
        where = f"{page.name}:{line}"
        start = time.perf_counter()
        if kind == "shell":
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=workdir, env=env,
                                  capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
            assert done.returncode == 0, f"{where} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        else:
            exec(compile(code, where, "exec"), {"__name__": "__docs__"})
            printed.append(capsys.readouterr().out)
        with capsys.disabled():
            print(f"\n{where} {kind} {time.perf_counter() - start:.1f} s", end="")
    return "".join(printed)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_blocks_run(page, tmp_path, mmrec_bin, monkeypatch, capsys):
    assert any(not skipped for *_, skipped in blocks(page)) or page.name in NO_RUNNABLE, f"{page.name}: nothing runs"
    printed = run_page(page, tmp_path / page.stem, mmrec_bin, monkeypatch, capsys)
    for expected in EXPECTED_OUTPUT.get(page.name, ()):
        assert expected in printed, f"{page.name}: {expected!r} not printed"


# what a page's Python blocks print, as their comments say
EXPECTED_OUTPUT = {
    "README.md": ("torch.Size([2, 384])", "32 image True"),
    "quantize.md": ("torch.Size([1, 16])", "torch.Size([1, 51])"),
    "indexes.md": ("Flat 1.0", "42"),
    "extract.md": ("torch.Size([2, 384])", "32 image True"),
    "rank.md": ("(2, 32) 1", "['task', 'domain', 'AUC', 'UAUC', 'GAUC']"),
}
NO_RUNNABLE = {"index.md", "benchmarks.md", "file-contracts.md"}

OUT_ARG = re.compile(r"""(?:--out(?:-json)?[ =]+|\bout=)["']?([^\s"',)]+)""")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_block_writes_its_own_folders(page):
    """No two runnable blocks of a page write the same output: rerunning one never mixes results."""
    seen: dict[str, int] = {}
    for _, code, line, skipped in blocks(page):
        if skipped:
            continue
        for out in set(OUT_ARG.findall(code)):  # inside one block a rerun is on purpose (resume)
            assert out not in seen, f"{page.name}:{line} writes {out}, as the block at line {seen[out]} does"
            seen[out] = line


def test_readme_is_one_screen_of_what_install_jobs_and_links():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 130, f"README has {len(lines)} lines"
    first_screen = "\n".join(lines[:45])
    for needed in ('pip install -e ".[cpu]"', ".[gpu]", "make demo", "make test", "| stage | output |", "mmrec extract"):
        assert needed in first_screen, f"{needed!r} is not on the README's first screen"
    for job in ("mmrec extract", "mmrec quantize", "mmrec index build"):
        assert job in text
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / link).is_file(), f"README links to missing {link}"
    assert len(set(re.findall(r"\]\(docs/([^)#]+)", text))) >= 8


def test_mkdocs_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(tmp_path / "site")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # material's end-of-life banner
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    nav = {p.name for p in DOCS.glob("*.md")}
    built = {p.parent.name + ".md" if p.parent != tmp_path / "site" else "index.md"
             for p in (tmp_path / "site").rglob("index.html")}
    assert nav <= built, nav - built


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    _serve(sys.argv[2])
