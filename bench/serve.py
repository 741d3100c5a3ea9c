"""``mmrec index serve`` (FastAPI on uvicorn) against the ``http.server`` implementation it replaced,
under the same bounded loopback load, in one run.

What it measures:

1. **Index.** A SYNTHETIC ``faiss:Flat`` index over ``--n`` random unit vectors (``--dim``), saved to
   ``--work``; both servers load that same folder.
2. **Servers.** Each runs as its own subprocess on 127.0.0.1 with ``OMP_NUM_THREADS=1``: today's
   ``python -m mmrec index serve --port 0``, and the peer, ``mmrec/index/server.py`` as it was at
   ``--peer-rev`` (the last ``ThreadingHTTPServer`` version, listen backlog 5, a thread per
   connection), taken from git history into a temp file and run with ``serve_index(folder, port=0)``.
   One runs after the other, never both at once; ``--repeats 2`` runs them again in reverse order.
3. **Load.** ``--clients`` (64) asyncio clients in this process, each on its own keep-alive
   connection, all connecting at once, then sending single-vector ``POST /search`` (k=10) requests back
   to back for ``--seconds``: requests/s (replies completed inside that window), p50/p99/max latency
   (write to end of body, every reply), clients that got a reply inside the window, the slowest connect (a full listen backlog drops SYNs, which the
   kernel retries after 1, 3, 7 ... s), non-200 replies, and connection errors (resets, refused or
   dropped connections; the client reconnects and goes on).
   For the new server the request count of its own ``/metrics`` is checked against the client's.

Caveat: the load generator and the server share this machine's cores (2 here, shared with other jobs),
so absolute figures are noisy; the ratio of the two servers in the same run is the figure to read.
Results: a table on stdout and ``bench-out/serve/serve-bench.json``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/serve.py                 # 64 clients, 3 s per server
    OMP_NUM_THREADS=1 .venv/bin/python bench/serve.py --seconds 5 --repeats 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PEER_REV = "78d05c39c5850dd41e410a8349ff5e2553d25aec"  # last commit serving with http.server

PEER_CHILD = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("mmrec_old_server", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
module.serve_index(sys.argv[2], port=0)
"""


def _start(argv: list[str]) -> tuple[subprocess.Popen, str, int]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    line = proc.stdout.readline()
    match = re.search(r"http://([\d.]+):(\d+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, match.group(1), int(match.group(2))


async def _read_reply(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?i)content-length:\s*(\d+)", head)
    await reader.readexactly(int(length.group(1)) if length else 0)
    return status


async def _load(host: str, port: int, bodies: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    requests = [
        b"POST /search HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (host.encode(), port, len(body), body)
        for body in bodies
    ]
    latencies: list[float] = []
    in_window = [0]
    served: set[int] = set()
    connect_s: list[float] = []
    counts = {"non_200": 0, "connection_errors": 0}
    ready = asyncio.Event()
    stop = [0.0]

    async def client(c: int) -> None:
        await ready.wait()
        i, conn = c, None
        while not stop[0] or time.perf_counter() < stop[0]:
            try:
                if conn is None:
                    asked = time.perf_counter()
                    conn = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
                    connect_s.append(time.perf_counter() - asked)
                reader, writer = conn
                start = time.perf_counter()
                writer.write(requests[i % len(requests)])
                status = await asyncio.wait_for(_read_reply(reader), 30)
                done = time.perf_counter()
                latencies.append(done - start)
                if done <= stop[0]:
                    in_window[0] += 1
                    served.add(c)
                counts["non_200"] += status != 200
                i += clients
            except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                counts["connection_errors"] += 1
                if conn is not None:
                    conn[1].close()
                conn = None
                await asyncio.sleep(0.01)
        if conn is not None:
            conn[1].close()

    tasks = [asyncio.create_task(client(c)) for c in range(clients)]
    begin = time.perf_counter()
    stop[0] = begin + seconds
    ready.set()  # every client connects at once
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - begin
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies), **counts,
        "requests_per_s": round(in_window[0] / seconds, 1),  # replies completed inside the load window
        "clients_served": len(served),  # clients with a reply inside the window
        "connect_max_ms": round(max(connect_s) * 1000, 1) if connect_s else None,
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
        "max_ms": round(float(ms.max()), 2) if len(ms) else None,
        "seconds_until_every_client_stopped": round(elapsed, 2),
    }


def _metrics_count(host: str, port: int) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10).read().decode()
    line = re.search(r'mmrec_http_requests_total\{method="POST",path="/search",status="200"\} ([\d.e+]+)', text)
    return float(line.group(1)) if line else 0.0


def run_one(name: str, argv: list[str], bodies: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    """Start the server ``argv`` (it prints its ``http://HOST:PORT``), warm it up, put ``clients`` on it
    for ``seconds`` with ``bodies`` as ``POST /search`` requests, stop it; the load's figures."""
    proc, host, port = _start(argv)
    try:
        asyncio.run(_load(host, port, bodies[:8], 4, 0.3))  # warm-up, not counted
        before = _metrics_count(host, port) if name == "uvicorn" else None
        result = {"host": host, **asyncio.run(_load(host, port, bodies, clients, seconds))}
        if before is not None:
            result["server_counted"] = int(_metrics_count(host, port) - before)
        print(f"  {name}: {result}", flush=True)
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="indexed vectors (default 2000: a search takes ~0.2 ms, the HTTP stack dominates)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clients", type=int, default=64, help="concurrent keep-alive clients (default 64)")
    parser.add_argument("--seconds", type=float, default=3.0, help="load time per server (default 3)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; even rounds run the servers in reverse order")
    parser.add_argument("--peer-rev", default=PEER_REV, help="git revision of the http.server implementation")
    parser.add_argument("--work", default=str(REPO / "bench-out" / "serve"), help="working folder and report")
    args = parser.parse_args(argv)

    from mmrec.index import build_index
    from mmrec.io import write_json

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index_dir = work / "index"
    build_index(x, index_dir, "faiss:Flat", keys=[f"item-{i}" for i in range(args.n)], progress=False, n_queries=100)
    queries = rng.standard_normal((512, args.dim)).astype(np.float32)
    bodies = [json.dumps({"vectors": [q.tolist()], "k": 10}).encode() for q in queries]

    peer_source = subprocess.run(["git", "-C", str(REPO), "show", f"{args.peer_rev}:mmrec/index/server.py"],
                                 check=True, capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix="_old_server.py", delete=False) as handle:
        handle.write(peer_source)
    servers = {
        "uvicorn": [sys.executable, "-m", "mmrec", "index", "serve", "--index", str(index_dir), "--port", "0"],
        "http.server": [sys.executable, "-c", PEER_CHILD, handle.name, str(index_dir)],
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    try:
        for round_ in range(args.repeats):
            order = list(servers) if round_ % 2 == 0 else list(servers)[::-1]
            print(f"round {round_ + 1}: {' then '.join(order)}, {args.clients} clients, {args.seconds} s each", flush=True)
            for name in order:
                runs[name].append(run_one(name, servers[name], bodies, args.clients, args.seconds))
    finally:
        os.unlink(handle.name)

    def best(name: str) -> dict[str, Any]:
        return max(runs[name], key=lambda r: r["requests_per_s"])

    new, old = best("uvicorn"), best("http.server")
    report = {"args": vars(args), "cpus": len(os.sched_getaffinity(0)), "runs": runs,
              "ratio_requests_per_s": round(new["requests_per_s"] / max(old["requests_per_s"], 1e-9), 2),
              "date": time.strftime("%Y-%m-%d %H:%M")}
    write_json(work / "serve-bench.json", report)
    print(f"\n{'server':<34}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'conn ms':>9}{'served':>8}{'non-200':>9}{'conn err':>9}")
    for label, r in ((f"http.server ({args.peer_rev[:7]}, backlog 5)", old), ("FastAPI + uvicorn (now)", new)):
        print(f"{label:<34}{r['requests']:>9}{r['requests_per_s']:>9}{r['p50_ms']:>9}{r['p99_ms']:>9}{r['max_ms']:>9}{r['connect_max_ms']:>9}{r['clients_served']:>8}"
              f"{r['non_200']:>9}{r['connection_errors']:>9}")
    print(f"req/s, new / old: {report['ratio_requests_per_s']}x   (best of {args.repeats} round(s); report: {work / 'serve-bench.json'})")
    return report


if __name__ == "__main__":
    main()
