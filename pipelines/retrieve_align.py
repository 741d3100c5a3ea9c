"""``mmrec retrieve align``: preference alignment of a trained generative run against watch-time feedback (a job).

:func:`align_run` (:class:`AlignJob`) loads a ``mmrec retrieve train --model generative`` run whose
data folder is the ``train/`` folder of a SYNTHETIC world (:mod:`mmrec.synthetic.watch_world`; real
logs carry no watch time to serve against). Each step takes ``users_per_step`` training users, samples
``preference.samples`` items per user from the policy (their training histories as context), serves them
to the world, which draws a watch time for each, shapes the rewards (:class:`~mmrec.retrieval.preference.
DurationAwareReward` over the logged watch times of the training users, or raw seconds) and updates
the policy with GBPO or DPO (:mod:`mmrec.retrieval.preference`) plus the teacher-forcing loss on a
random logged position of each user, through :func:`mmrec.training.fit` (progress bar, ``loop``
options). Dropout is off during alignment (the ratio ``pi / pi_old`` must compare one policy).

The report (``metrics.json``) holds ``before`` and ``after``: :func:`truth_metrics` on held-out
users (``eval_data``, default the world's ``heldout/``) -- the true expected reward and watch time of
each user's top-10 beams, the share of long items, Recall / NDCG@10 of the held-out next items and
code-level entropy -- and ``train`` (per epoch: loss, the reward signal, the true reward of the
sampled items). The output folder is a run folder like ``retrieve train``'s (the job config of
``config.json`` gains ``align`` and ``aligned_from``), so :func:`~mmrec.pipelines.retrieve.load_run`, ``retrieve evaluate`` and this job read it.

Under ``torchrun`` the policy updates with DDP (:func:`mmrec.training.fit`): ``users_per_step`` is the
global step, each rank samples and serves its share of the step's users ([I] with the same random
streams as the other ranks: their draws are alike for different users); every rank reports the truth
alike; rank 0 writes the run folder.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from mmrec import runs
from mmrec.config import build_config, replace_config
from mmrec.device import resolve_device
from mmrec.errors import UsageError
from mmrec.pipelines.retrieve import load_run, save_run
from mmrec.retrieval.data import LOG_FILE, Sequences, read_sequences
from mmrec.retrieval.generative import GenerativeRetriever
from mmrec.retrieval.generative_beam import CodeTrie, beam_search, evaluate_generative, sample_tuples
from mmrec.retrieval.preference import (
    DurationAwareReward,
    PreferenceConfig,
    advantages,
    dpo_loss,
    dpo_pairs,
    gbpo_loss,
    kl_to_reference,
    pg_loss,
)
from mmrec.synthetic.watch_world import WatchWorld
from mmrec.training import LoopConfig, distributed, fit, on_rank0, rank_shares


@dataclass
class AlignJob:
    """Options of ``mmrec retrieve align`` (the method's are :class:`PreferenceConfig`)."""

    world: str | None = field(default=None, metadata={"help": "world folder of the SYNTHETIC watch world: feedback and truth"})
    eval_data: str | None = field(default=None, metadata={"help": "data folder of the users reported (default: WORLD/heldout)"})
    users_per_step: int = field(default=64, metadata={"help": "users whose samples make one update"})
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate"})
    seed: int = field(default=0, metadata={"help": "seed of the user order, the samples and the feedback"})
    top_k: int = field(default=10, metadata={"help": "beams per user in the truth report"})
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)  # one epoch = every training user once

    def __post_init__(self) -> None:
        if self.users_per_step < 1 or self.lr <= 0 or self.top_k < 1:
            raise UsageError("users_per_step and top_k must be >= 1, lr > 0")


def code_log_probs(model: GenerativeRetriever, history: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``log p(c_l | c_<l, h)`` of code tuples ``(B, G, L)``: ``(B, G, L)``."""
    logp = model.level_log_probs(model.encode(history), codes)
    return torch.stack([lp.gather(-1, codes[..., level, None])[..., 0] for level, lp in enumerate(logp)], -1)


def _entropy(codes: np.ndarray) -> float:
    """Mean over rows and code levels of the entropy (nats) of the codes within a row ``(U, K, L)``."""
    out = []
    for level in range(codes.shape[2]):
        for row in codes[:, :, level]:
            p = np.unique(row, return_counts=True)[1] / len(row)
            out.append(float(-(p * np.log(p)).sum()))
    return float(np.mean(out))


def truth_metrics(model: GenerativeRetriever, world: WatchWorld, data: str | Path, *, k: int = 10, batch_size: int = 256) -> dict[str, Any]:
    """The top-``k`` beams of every user of the data folder ``data`` (histories without their last item)
    judged against the world's truth: ``true_reward`` and ``true_watch_s`` (means over the top-k),
    ``long_share``, ``oracle_reward`` (mean of each user's best ``k`` true rewards), ``code_entropy``
    (within each user's list, mean over levels), ``item_entropy`` (of all listed items pooled), and
    Recall / NDCG@5 / @k of the held-out next items (:func:`evaluate_generative`)."""
    seqs, manifest = read_sequences(data)
    history, targets = seqs.split_last()
    first = int(manifest.get("first_world_user", 0))
    max_len = model.config.max_len
    trie = CodeTrie.of(model)
    model.eval()
    users = np.arange(len(history))
    beam = max(k, model.config.beam)
    items = np.zeros((len(users), k), dtype=np.int64)
    for s in range(0, len(users), batch_size):
        tuples = beam_search(model, trie, history.padded(users[s : s + batch_size], max_len), beam)[0][:, :k].cpu().numpy()
        items[s : s + batch_size] = trie.slot_items[trie.slot_offsets[tuples]]  # a slot's first item
    world_users = (first + users)[:, None]
    every = world.expected_reward(world_users, np.arange(len(world.duration))[None])
    ranking = evaluate_generative(model, history, targets, max_len=max_len, ks=(5, k), beam=beam, trie=trie)
    counts = np.unique(items, return_counts=True)[1] / items.size
    return {"users": int(len(users)), "k": int(k), "true_reward": float(world.expected_reward(world_users, items).mean()),
            "true_watch_s": float(world.expected_watch(world_users, items).mean()), "long_share": float(world.long[items].mean()),
            "oracle_reward": float(np.sort(every, 1)[:, -k:].mean()), "code_entropy": _entropy(world.codes[items]),
            "item_entropy": float(-(counts * np.log(counts)).sum()),
            **{key: ranking[key] for key in (f"recall@{k}", f"ndcg@{k}", "recall@5", "ndcg@5")}}


def _sft_batch(seqs: Sequences, users: np.ndarray, max_len: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random logged position ``t >= 1`` of each user: ``(history before it (B, T), item at it (B,))``."""
    ends = seqs.offsets[users] + rng.integers(1, np.maximum(seqs.lengths[users], 2))
    starts = np.maximum(seqs.offsets[users], ends - max_len)
    length = int((ends - starts).max())
    pos = ends[:, None] - length + np.arange(length)
    history = np.where(pos >= starts[:, None], seqs.items[np.clip(pos, 0, None)], -1)
    return torch.as_tensor(history), torch.as_tensor(seqs.items[ends])


def _reference_rewards(data: Path, world: WatchWorld, buckets: int) -> DurationAwareReward:
    """The shaping's reference: the logged watch times of the training parts of ``data``."""
    table = pq.read_table(data / LOG_FILE, columns=["item_id", "train", "watch_s"])
    if "watch_s" not in table.column_names:
        raise UsageError(f"{data / LOG_FILE} has no watch_s column: align needs a watch world's data folder")
    keep = table.column("train").to_numpy() == 1
    items = table.column("item_id").to_numpy()[keep]
    return DurationAwareReward(table.column("watch_s").to_numpy()[keep], world.duration[items], buckets)


def align_run(run: str | Path, out: str | Path, config: AlignJob | dict | str | None = None, *, progress: bool = True,
              **overrides: Any) -> dict[str, Any]:
    """Align the generative run ``run`` with the world's feedback; write the aligned run folder ``out``; returns ``metrics.json``."""
    job = replace_config(build_config(AlignJob, config, "retrieve align"), "retrieve align", **overrides)
    if not job.world:
        raise UsageError("retrieve align needs world: the folder of a SYNTHETIC watch world (its feedback and truth)")
    with distributed(resolve_device(job.loop.device)):
        return _align_run(run, out, job, progress)


def _align_run(run: str | Path, out: str | Path, job: AlignJob, progress: bool) -> dict[str, Any]:
    model, run_config = load_run(run, device=job.loop.device)
    if not isinstance(model, GenerativeRetriever):
        raise UsageError(f"retrieve align needs a generative run; {run} is {run_config['job']['model']}")
    start = time.perf_counter()
    pref, world = job.preference, WatchWorld.load(job.world)
    data = Path(run_config["job"]["data"])
    eval_data = Path(job.eval_data) if job.eval_data else Path(job.world) / "heldout"
    seqs, manifest = read_sequences(data)
    history, _ = seqs.split_last()
    first = int(manifest.get("first_world_user", 0))
    if len(world.duration) != model.config.n_items or first + len(history) > len(world.affinity):
        raise UsageError(f"the world {job.world} ({len(world.duration)} items, {len(world.affinity)} users) is not the one of "
                         f"the run's data {data} ({model.config.n_items} items, users {first}..{first + len(history) - 1})")
    torch.manual_seed(job.seed)
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    shaper = _reference_rewards(data, world, pref.duration_buckets)
    trie = CodeTrie.of(model)
    device = model.start.device
    tuple_codes = torch.as_tensor(trie.tuples, device=device)
    max_len = model.config.max_len
    before = truth_metrics(model, world, eval_data, k=job.top_k)
    needs_ref = pref.method == "dpo" or pref.kl_coef > 0

    def rollouts(epoch: int):
        rng, gen = np.random.default_rng([job.seed, epoch]), torch.Generator(device).manual_seed(job.seed * 100_003 + epoch)
        order = rng.permutation(len(history))
        for users in rank_shares(order[s : s + job.users_per_step] for s in range(0, len(order), job.users_per_step)):
            hist = torch.as_tensor(history.padded(users, max_len), device=device)
            model.eval()
            with torch.no_grad():
                tuples = sample_tuples(model, trie, hist, pref.samples, temperature=pref.temperature, generator=gen)  # (B, G)
                codes = tuple_codes[tuples]  # (B, G, L)
                old = code_log_probs(model, hist, codes)
                ref = code_log_probs(reference, hist, codes) if needs_ref else None
            items = trie.slot_items[trie.slot_offsets[tuples.cpu().numpy()]]
            world_users = first + users[:, None]
            watch = world.watch(world_users, items, rng)
            reward = shaper(watch, world.duration[items]) if pref.reward == "duration" else watch
            sft_history, sft_targets = _sft_batch(history, users, max_len, rng)
            batch = {"history": hist, "codes": codes, "old": old, "ref": ref, "reward": torch.as_tensor(reward, dtype=torch.float32, device=device),
                     "watch": float(watch.mean()), "true_reward": float(world.expected_reward(world_users, items).mean()),
                     "long_share": float(world.long[items].mean()), "sft_history": sft_history.to(device), "sft_targets": sft_targets.to(device)}
            for _ in range(pref.updates):
                yield batch

    def step(net, b):
        model.eval()  # no dropout: pi / pi_old compares one policy
        logp = code_log_probs(model, b["history"], b["codes"])
        if pref.method != "dpo":
            adv = advantages(b["reward"], pref)
            loss = gbpo_loss(logp, b["old"], adv) if pref.method == "gbpo" else pg_loss(logp, adv)
            if pref.kl_coef > 0:
                loss = loss + pref.kl_coef * kl_to_reference(logp, b["ref"])
        else:
            rows, chosen, rejected = dpo_pairs(b["reward"])
            item, ref = logp.sum(-1), b["ref"].sum(-1)
            loss = (dpo_loss(item[rows, chosen], item[rows, rejected], ref[rows, chosen], ref[rows, rejected], pref.beta)
                    if len(rows) else logp.sum() * 0.0)
        logs = {"policy_loss": float(loss.detach()), "reward": float(b["reward"].mean()), "watch_s": b["watch"],
                "true_reward": b["true_reward"], "long_share": b["long_share"]}
        if pref.sft_weight > 0:
            sft, _ = model.loss(b["sft_history"], b["sft_targets"])
            logs["sft_loss"] = float(sft.detach())
            loss = loss + pref.sft_weight * sft
        return loss, logs

    optimizer = torch.optim.AdamW(model.parameters(), lr=job.lr, weight_decay=0.0)
    loop = replace_config(job.loop, "loop", progress=job.loop.progress and progress, desc=f"retrieve align ({pref.method}, {pref.reward})",
                          restore_best=False)
    result = fit(model, optimizer, rollouts, step, config=loop, size=lambda b: int(b["codes"].shape[0] * b["codes"].shape[1]))
    model.eval()
    after = truth_metrics(model, world, eval_data, k=job.top_k)
    report = {"model": "generative", "aligned_from": str(Path(run).resolve()), "method": pref.method, "reward": pref.reward,
              "data": str(data), "eval_data": str(eval_data.resolve()), "world": str(Path(job.world).resolve()), "synthetic": True,
              "before": before, "after": after,
              "train": {k: v for k, v in result.as_dict().items() if k != "best_metrics"}, "seconds": round(time.perf_counter() - start, 3)}
    job_config = {**run_config["job"], "align": asdict(job), "aligned_from": report["aligned_from"]}
    return on_rank0(save_run, out, asdict(model.config), job_config, model.state_dict(), json.loads((Path(run) / runs.VOCAB).read_text()), report)


__all__ = ["AlignJob", "align_run", "code_log_probs", "truth_metrics"]
