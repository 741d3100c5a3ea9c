"""The count, cross-domain EASE and item-kNN baselines (:mod:`.baselines`) as cross-domain models.

``mmrec cdr train --model count|ease|item-knn`` builds :class:`BaselineModel`: nothing is trained by
gradient; :meth:`BaselineModel.select` fits the baseline of each target domain for every value of its
parameter in :data:`~mmrec.crossdomain.baselines.GRID` (λ of EASE, k of item-kNN; the count has none) and
keeps the best on held-out NDCG@10, as ``bench/cdr_table.py`` does, so a run folder, ``cdr evaluate``
(``--test`` included) and ``cdr export`` treat a baseline like any run. The chosen parameters are saved
with the run (``extra.param.<domain>``) and the baselines are refitted from the saved training pairs
when the run is loaded; scores are the baseline's own (:meth:`CrossDomainBaseline.scores`, popularity
breaking ties), so a run scores exactly as :func:`~mmrec.crossdomain.baselines.evaluate_baseline`.

[I] Exported user vectors: a baseline has no user embedding; its target score row ``x_u W`` projected on
the top ``dim`` right singular vectors ``V`` of the target domain's training matrix, ``x_u W V``: a
rank-``dim`` summary of what it would rank (``⟨x_u W V, V[i]⟩`` approximates the score of item i).
"""

from __future__ import annotations

import numpy as np
import torch

from mmrec.crossdomain.base import CDRModel
from mmrec.crossdomain.baselines import GRID, binary_matrix, fit_baseline, select_baseline
from mmrec.crossdomain.data import CDRData


class BaselineModel(CDRModel):
    """A fitted baseline per target domain; ``name`` is its :data:`~mmrec.crossdomain.baselines.BASELINES` name."""

    name = ""
    trainable = False  # train_model selects its parameter instead of running the loop
    cross_domain = False  # no count residual on top: the score is the baseline's
    scores_from_vectors = False  # the evaluator scores with ``score(users=...)`` alone

    def __init__(self, data: CDRData, *, dim: int = 64, params: tuple[dict, dict] = ({}, {})) -> None:
        super().__init__()
        self.data, self.dim, self.params = data, dim, list(params)
        self.fitted: list = [None, None]
        self._basis: list[np.ndarray | None] = [None, None]

    @classmethod
    def from_config(cls, config, data, state=None) -> BaselineModel:
        (param, _), = GRID[cls.name].items() if GRID[cls.name] else ((None, ()),)
        params = tuple({param: float(state[f"param.{d}"])} if param and state and f"param.{d}" in state else {}
                       for d in range(2))
        if param == "k":
            params = tuple({k: int(v) for k, v in p.items()} for p in params)
        return cls(data, dim=config.dim, params=params)

    def select(self, targets: dict[int, np.ndarray], seed: int) -> dict[str, dict[str, float]]:
        """Fit each target domain's baseline over the grid, keep the best on its held-out pairs
        ``targets`` (domain -> ``(n, 2)``); returns ``{domain name: metrics}`` of the kept ones."""
        metrics = {}
        for d, heldout in targets.items():
            self.params[d], metrics[self.data.domains[d].name], self.fitted[d] = select_baseline(
                self.name, self.data, d, seed=seed, heldout=heldout)
        return metrics

    def baseline(self, domain: int):
        """The fitted baseline of target ``domain`` (fitted with its saved parameter on first use)."""
        if self.fitted[domain] is None:
            self.fitted[domain] = fit_baseline(self.name, self.data, domain, **self.params[domain])
        return self.fitted[domain]

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {f"param.{d}": torch.tensor([float(v)]) for d, p in enumerate(self.params) for v in p.values()}

    def item_tables(self) -> list[torch.Tensor]:
        return []

    def user_vectors(self, domain, users, own, other, cold, tables):
        """``x_u W V`` ``(B, dim)``: the score rows projected on the target's top singular vectors."""
        basis = self.basis(domain)
        out = [self.baseline(domain).user_scores(chunk) @ basis for chunk in np.array_split(
            users.cpu().numpy(), max(1, len(users) // 512))]
        return torch.as_tensor(np.concatenate(out), dtype=torch.float32)

    def basis(self, domain: int) -> np.ndarray:
        """``(n_items, k)`` top right singular vectors of the target domain's training matrix."""
        if self._basis[domain] is None:
            from scipy.sparse.linalg import svds

            dom = self.data.domains[domain]
            x = binary_matrix(dom.train, self.data.n_users, dom.n_items)
            k = min(self.dim, min(x.shape) - 1)
            _, s, vt = svds(x, k=k, random_state=0)
            self._basis[domain] = np.ascontiguousarray(vt[np.argsort(-s)].T)
        return self._basis[domain]

    def score(self, domain, user, items, tables, users=None, cold=None):
        return torch.as_tensor(self.baseline(domain).scores(users.cpu().numpy(), items.cpu().numpy()))


class CountModel(BaselineModel):
    """``count``: the cross-domain co-occurrence count."""

    name = "count"


class EASEModel(BaselineModel):
    """``ease``: cross-domain EASE, λ chosen on held-out NDCG@10."""

    name = "ease"


class ItemKNNModel(BaselineModel):
    """``item-knn``: cosine item-kNN across domains, k chosen on held-out NDCG@10."""

    name = "item_knn"
