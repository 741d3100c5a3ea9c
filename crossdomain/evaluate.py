"""The cold-start ranking protocol of CDRIB / UniCDR: 1 held-out item among 999 sampled negatives.

For each held-out (user, item) of the target domain, 999 negatives are drawn uniformly (fixed seed)
from the target items the user never interacted with (in that domain's train and held-out files);
the rank of the true item counts the negatives scoring ``>=`` it as ahead (ties are pessimistic).
Metrics: MRR = mean 1/(rank+1); HR@k = P(rank < k); NDCG@k = mean 1/log2(rank+2) over rank < k.
:class:`HeldoutEvaluator` fixes the candidates of each target domain's held-out pairs once and scores a
model on them (every epoch of training, and again on a saved run).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mmrec.crossdomain.base import device_of
from mmrec.crossdomain.data import CDRData, other_histories
from mmrec.errors import UsageError

KS = (1, 5, 10)


def sample_candidates(heldout: np.ndarray, seen: np.ndarray, n_items: int, *, negatives: int = 999,
                      seed: int = 0) -> np.ndarray:
    """``(n, 1 + negatives)`` item ids: column 0 the held-out item, then negatives the user never saw.

    ``heldout`` ``(n, 2)`` (user, item); ``seen`` ``(m, 2)`` every (user, item) of the target domain to
    exclude (train and held-out). Same inputs and seed, same candidates.
    """
    if n_items - 1 < negatives:
        raise ValueError(f"cannot draw {negatives} negatives from {n_items} items")
    rng = np.random.default_rng(seed)
    order = np.argsort(seen[:, 0], kind="stable")
    seen_users, seen_items = seen[order, 0], seen[order, 1]
    out = np.empty((len(heldout), 1 + negatives), dtype=np.int64)
    for row, (user, item) in enumerate(heldout):
        lo, hi = np.searchsorted(seen_users, [user, user + 1])
        excluded = np.union1d(seen_items[lo:hi], [item])
        draw = rng.choice(n_items - len(excluded), size=negatives, replace=False)
        # map draws from [0, n_items - |excluded|) onto the allowed ids, skipping the excluded ones
        draw = draw + np.searchsorted(excluded - np.arange(len(excluded)), draw, side="right")
        out[row, 0], out[row, 1:] = item, draw
    return out


def ranks(scores: torch.Tensor | np.ndarray) -> np.ndarray:
    """Pessimistic 0-based rank of column 0 among the row: the number of other columns scoring ``>=``."""
    scores = torch.as_tensor(scores)
    return (scores[:, 1:] >= scores[:, :1]).sum(1).cpu().numpy()


def metrics_from_ranks(rank: np.ndarray) -> dict[str, float]:
    """MRR, NDCG@5/10 and HR@1/5/10 from 0-based ranks."""
    rank = np.asarray(rank, dtype=np.float64)
    out = {"MRR": float(np.mean(1.0 / (rank + 1)))}
    for k in (5, 10):
        out[f"NDCG@{k}"] = float(np.mean(np.where(rank < k, 1.0 / np.log2(rank + 2), 0.0)))
    for k in KS:
        out[f"HR@{k}"] = float(np.mean(rank < k))
    out["n"] = int(len(rank))
    return out


def evaluate_scores(score_fn: Callable[[np.ndarray, np.ndarray], torch.Tensor], heldout: np.ndarray,
                    candidates: np.ndarray, *, batch: int = 512) -> dict[str, float]:
    """Metrics of ``score_fn(users (b,), candidates (b, C)) -> scores (b, C)`` over the held-out pairs."""
    out = []
    for start in range(0, len(heldout), batch):
        users = heldout[start:start + batch, 0]
        out.append(ranks(score_fn(users, candidates[start:start + batch])))
    return metrics_from_ranks(np.concatenate(out))


class HeldoutEvaluator:
    """Fixed candidates for the held-out ``(user, item)`` pairs of each target domain (``targets``:
    domain index -> ``(n, 2)`` array); calling it scores a model on them: ``{domain name: metrics}``.

    ``hist``: both domains' training histories (:func:`~mmrec.crossdomain.data.domain_histories`), on the
    CPU; each batch of users is scored on the model's device (:func:`~mmrec.crossdomain.base.device_of`).
    """

    def __init__(self, data: CDRData, hist: tuple[torch.Tensor, torch.Tensor], targets: dict[int, np.ndarray],
                 seed: int) -> None:
        self.data, self.hist, self.sets = data, hist, {}
        self.other = other_histories(data, hist)
        for d, heldout in targets.items():
            dom = data.domains[d]
            if dom.n_items < 1000 + 100:
                raise UsageError(f"domain {dom.name} has {dom.n_items} items; the protocol samples 999 negatives "
                                 "per held-out item and needs at least 1,100")
            seen = np.concatenate([dom.train, heldout])
            self.sets[d] = (heldout, sample_candidates(heldout, seen, dom.n_items, seed=seed))

    def evaluate_fn(self, score_fn: Callable[[int, np.ndarray, np.ndarray], torch.Tensor]) -> dict[str, dict[str, float]]:
        """``{domain name: metrics}`` of ``score_fn(domain, users (b,), candidates (b, C)) -> (b, C)``."""
        return {self.data.domains[d].name: evaluate_scores(lambda users, items, d=d: score_fn(d, users, items),
                                                           heldout, candidates)
                for d, (heldout, candidates) in self.sets.items()}

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> dict[str, dict[str, float]]:
        was = model.training
        model.eval()
        tables = model.item_tables()
        device = device_of(model)

        def score(d: int, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
            users = torch.as_tensor(users)
            own, other = self.hist[d][users].to(device), self.other[1 - d][users].to(device)
            users = users.to(device)
            cold = (own < 0).all(1)
            # a baseline scores from the user ids alone (baseline_model): no vectors to build
            user = model.user_vectors(d, users, own, other, cold, tables) if getattr(model, "scores_from_vectors", True) else None
            return model.score(d, user, torch.as_tensor(items, device=device), tables, users=users, cold=cold)

        out = self.evaluate_fn(score)
        model.train(was)
        return out
