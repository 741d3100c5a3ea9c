"""Training speed of the generative retriever on real data: samples/s of the training step and the cost of
per-epoch validation, each variant measured in the same process (interleaved rounds, median), as ratios.

    OMP_NUM_THREADS=1 python bench/gen_speed.py --data /work/data/seq/Beauty \
        --codes bench-out/gen/codes/Beauty/sasrec-rq-kmeans/codes.parquet --set '{"arch": "lazy-decoder", "encoder_layers": 0, "decoder_layers": 4}'

Variants of the step (``retrieval/generative_train.py``'s batches, bucketed by history length): ``before``
(batch 256, AdamW's per-tensor loop: the trainer as it was), ``fused`` (the fused AdamW kernel), and
``fused, batch N`` for each of ``--batches``. The step is split once into forward-context (history ->
keys / values), full forward (loss) and forward + backward + update. Validation: users/s of constrained
beam search, and the seconds one epoch's validation costs on all users and on a ``--val-users`` sample.
Prints markdown and writes ``--out`` JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="mmrec seq import folder")
    p.add_argument("--codes", required=True, help="codes.parquet of mmrec quantize")
    p.add_argument("--set", default='{"arch": "lazy-decoder", "encoder_layers": 0, "decoder_layers": 4}', help="JSON: GenerativeConfig fields")
    p.add_argument("--batches", default="256,1024,2048", help="batch sizes of the fused variants")
    p.add_argument("--samples", type=int, default=8192, help="training samples per timed round of each variant")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--val-users", type=int, default=3000)
    p.add_argument("--beam-users", type=int, default=1000, help="validation users timed for beam-search users/s")
    p.add_argument("--out", default="bench-out/gen_speed.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from mmrec.config import build_config
    from mmrec.pipelines.retrieve import TrainJob, _item_features
    from mmrec.retrieval.data import read_sequences
    from mmrec.retrieval.generative import GenerativeRetriever
    from mmrec.retrieval.generative_beam import CodeTrie, evaluate_generative
    from mmrec.retrieval.generative_train import _Windows, model_config

    seqs, _ = read_sequences(args.data)
    history, targets = seqs.split_last()
    job = build_config(TrainJob, {"model": "generative", "codes": args.codes, "generative": json.loads(args.set)}, "job")
    codes, _, info = _item_features(job, seqs.n_items)
    config = model_config(job.generative, seqs.n_items, codes, info.get("codebook_sizes"))
    torch.manual_seed(0)
    model = GenerativeRetriever(config)
    model.set_codes(codes)
    windows = _Windows(history, config.max_len, (model.item_codes >= 0).all(1).numpy())
    variants = {"before (batch 256, per-tensor AdamW)": (256, False)}
    variants.update({f"fused AdamW, batch {b}": (int(b), True) for b in args.batches.split(",")})
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused) for name, (_, fused) in variants.items()}
    streams = {name: windows.epochs(b, seed=1)(0) for name, (b, _) in variants.items()}

    def timed_round(name: str) -> float:
        opt, done, start = optimizers[name], 0, time.perf_counter()
        while done < args.samples:
            batch = next(streams[name])
            loss, _ = model.loss(batch["history"], batch["targets"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += len(batch["targets"])
        return done / (time.perf_counter() - start)

    model.train()
    for name in variants:  # warm-up
        args_samples, args.samples = args.samples, 512
        timed_round(name)
        args.samples = args_samples
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in variants:
            rates[name].append(timed_round(name))
    speed = {name: statistics.median(r) for name, r in rates.items()}

    # where a step's time goes (batch 256, forward context / forward loss / the whole step)
    batch = next(windows.epochs(256, seed=2)(0))
    parts = {}
    for label, fn in (("context (history -> keys / values)", lambda: model.encode(batch["history"])),
                      ("forward (loss)", lambda: model.loss(batch["history"], batch["targets"])),
                      ("forward + backward", lambda: model.loss(batch["history"], batch["targets"])[0].backward())):
        fn()
        start = time.perf_counter()
        for _ in range(10):
            fn()
        parts[label] = (time.perf_counter() - start) / 10
    model.zero_grad(set_to_none=True)

    trie = CodeTrie.of(model)
    users = np.random.default_rng(0).choice(len(targets), min(args.beam_users, len(targets)), replace=False)
    report = evaluate_generative(model, history.subset(users), targets[users], max_len=config.max_len, trie=trie)
    beam_rate = report["beam_users_per_s"]
    epoch_train_s = {name: len(windows) / s for name, s in speed.items()}
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "data": args.data, "config": json.loads(args.set),
              "training_samples": len(windows), "validation_users": len(targets), "samples_per_s": speed, "rounds": rates,
              "step_parts_s_batch_256": parts, "beam_users_per_s": beam_rate,
              "epoch_train_s": epoch_train_s, "epoch_validation_s": {"all": len(targets) / beam_rate, "sample": args.val_users / beam_rate}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    base = speed[next(iter(variants))]
    print(f"\n{len(windows):,} training samples, {len(targets):,} validation users, one torch thread\n")
    print("| step variant | samples/s (median of rounds) | vs before | epoch of training, s |\n|---|---:|---:|---:|")
    for name, s in speed.items():
        print(f"| {name} | {s:,.0f} | {s / base:.2f}x | {epoch_train_s[name]:.0f} |")
    print("\n| part of a batch-256 step | ms |\n|---|---:|")
    for label, s in parts.items():
        print(f"| {label} | {1000 * s:.0f} |")
    print(f"\nbeam search: {beam_rate:,.0f} users/s; one epoch's validation: all {len(targets):,} users "
          f"{len(targets) / beam_rate:.0f} s, a {args.val_users:,}-user sample {args.val_users / beam_rate:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
