"""Training throughput under DDP: ``mmrec retrieve train --model sasrec`` on one process and under
``torchrun`` with N CPU processes (gloo), one torch thread each, the same global batch, in the same run.

Each run is one epoch capped at ``--max-steps`` updates (the same steps on 1 and N processes: every rank
holds 1/N of each global batch) and reports the loop's samples/s over all ranks (evaluation excluded).
Prints one row per process count, with the ratio to one process, and writes ``OUT/ddp.json``. Only
meaningful on an otherwise idle machine with at least N free cores: say what else was running.

    .venv/bin/python bench/ddp.py --data /work/data/seq/Scientific --procs 2 --max-steps 200 --out bench-out/ddp
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(data: str, procs: int, args: argparse.Namespace) -> dict:
    """One training run on ``procs`` processes; returns rank 0's report."""
    with tempfile.TemporaryDirectory() as out:
        job = ["retrieve", "train", "--data", data, "--out", out, "--model", "sasrec", "--epochs", "1",
               "--max-steps", str(args.max_steps), "--batch-size", str(args.batch_size), "--json"]
        launch = [sys.executable, "-m", "mmrec"] if procs == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), "-m", "mmrec", "--"]
        done = subprocess.run([*launch, *job], capture_output=True, text=True, check=False,
                              env=dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES=""))
        if done.returncode:
            sys.exit(f"{procs} process(es) failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout[done.stdout.index("{"):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="data folder of mmrec seq import")
    parser.add_argument("--procs", type=int, nargs="+", default=[2], help="process counts besides 1")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=256, help="the global batch")
    parser.add_argument("--out", default="bench-out/ddp")
    args = parser.parse_args()
    rows = []
    for procs in (1, *args.procs):
        report = run(args.data, procs, args)
        t = report["train"]
        rows.append({"procs": procs, "steps": t["steps"], "samples": t["samples"], "seconds": t["seconds"],
                     "samples_per_s": t["samples_per_s"], "ndcg@10": report["validation"]["ndcg@10"]})
        rows[-1]["speedup"] = rows[-1]["samples_per_s"] / rows[0]["samples_per_s"]
        print(f"{procs} process(es): {t['steps']} steps, {t['samples_per_s']:.0f} samples/s "
              f"({rows[-1]['speedup']:.2f}x one process), validation NDCG@10 {rows[-1]['ndcg@10']:.4f}", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "ddp.json").write_text(json.dumps({"data": args.data, "max_steps": args.max_steps,
                                                          "batch_size": args.batch_size, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
