"""Can a re-weighted cross-domain count order the held-out item better than the count? (issue 24, CPU, minutes)

The count ``x_u X_sᵀ X_t`` (:class:`mmrec.crossdomain.baselines.CoCount`) ties many candidates, and
popularity breaks the ties. Two families of non-learned forms, each on the models' candidates of every
direction's ``valid.txt`` (evaluator seed 0), against the count with its popularity tie-break:

- ``weighted``: ``x_u D_s^-a X_sᵀ diag(|S_v|^-b |T_v|^-c) X_t D_t^-g``: a source item weighted down by its
  overlap degree (``a``, the IDF of item-based CF), an overlap user by its source / target history (``b``,
  ``c``, user-kNN normalisation), a target item by its degree (``g``; ``g < 0`` leans on popularity).
  ``a = b = c = g = 0`` is the count.
- ``expanded``: the count of the source history smoothed by source-domain item-item similarity over every
  source user (not only the overlap ones): ``(x_u + α x_u S) X_sᵀ X_t``, ``S`` the co-occurrence of the
  source domain normalised by cosine or by row. Every cold user then has counts, where the count has none.

Prints one JSON line per form and direction and the best forms per direction:

    OMP_NUM_THREADS=1 .venv/bin/python bench/cdr_count_forms.py --data /work/shared/data/amazon-cdr
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import scipy.sparse as sp

PAIRS = ("sport_cloth", "game_video")


def _forms():
    from mmrec.crossdomain.baselines import CrossDomainBaseline

    class Weighted(CrossDomainBaseline):
        def __init__(self, x_src, x_tgt, *, a=0.0, b=0.0, c=0.0, g=0.0):
            super().__init__(x_src, x_tgt)
            ds, dt = (np.maximum(np.asarray(m.sum(0)).ravel(), 1) for m in (self.xs, self.xt))
            s_v, t_v = (np.diff(m.indptr).astype(float) for m in (self.xs, self.xt))
            user = np.where(s_v > 0, np.maximum(s_v, 1) ** -b * np.maximum(t_v, 1) ** -c, 0.0)
            self.g = (sp.diags(ds ** -a) @ self.xs.T @ sp.diags(user) @ self.xt @ sp.diags(dt ** -g)).tocsr()

    class Expanded(CrossDomainBaseline):
        def __init__(self, x_src, x_tgt, *, full_src, alpha, norm):
            super().__init__(x_src, x_tgt)
            self.g = (self.xs.T @ self.xt).tocsr()
            s = (full_src.T @ full_src).tocsr()
            s.setdiag(0)
            s.eliminate_zeros()
            if norm == "cos":
                inv = 1 / np.sqrt(np.maximum(np.asarray(full_src.sum(0)).ravel(), 1))
                s = sp.diags(inv) @ s @ sp.diags(inv)
            else:
                s = sp.diags(1 / np.maximum(np.asarray(s.sum(1)).ravel(), 1e-9)) @ s
            self.s, self.alpha = sp.csr_matrix(s), alpha

        def left(self, users):
            x = self.x_src[users]
            return x + self.alpha * (x @ self.s)

    return Weighted, Expanded


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="/work/shared/data/amazon-cdr", help="the amazon-cdr folder")
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=PAIRS)
    p.add_argument("--top", type=int, default=3, help="best forms printed per direction")
    args = p.parse_args(argv)
    from mmrec.crossdomain.baselines import binary_matrix, evaluate_baseline, fit_baseline
    from mmrec.crossdomain.data import domain_histories
    from mmrec.crossdomain.evaluate import HeldoutEvaluator
    from mmrec.crossdomain.files import load_pair

    weighted, expanded = _forms()
    for pair in args.pairs:
        data = load_pair(args.data, pair)
        for t in range(2):
            name = data.domains[t].name
            evaluator = HeldoutEvaluator(data, domain_histories(data, 1), {t: data.domains[t].valid}, 0)
            count = fit_baseline("count", data, t)
            full_src = binary_matrix(data.domains[1 - t].train, data.n_users, data.domains[1 - t].n_items)
            forms = [("weighted", dict(a=a, b=b, c=c, g=g)) for a, b, c, g in
                     itertools.product((0, 0.25, 0.5, 1), (0, 0.5, 1), (0, 0.5, 1), (-0.25, 0, 0.25, 0.5))]
            forms += [("expanded", dict(alpha=a, norm=n)) for n in ("cos", "row") for a in (0.01, 0.1, 1.0)]
            rows = []
            for family, params in forms:
                cls, extra = (weighted, {}) if family == "weighted" else (expanded, {"full_src": full_src})
                m = evaluate_baseline(cls(count.x_src, count.x_tgt, **params, **extra), data, t, evaluator=evaluator)
                rows.append({"target": name, "form": family, **params, "NDCG@10": m["NDCG@10"], "HR@10": m["HR@10"]})
                print(json.dumps(rows[-1]), flush=True)
            base = next(r for r in rows if r["form"] == "weighted" and not any(r[k] for k in "abcg"))
            for r in sorted(rows, key=lambda r: -r["NDCG@10"])[: args.top]:
                params = {k: v for k, v in r.items() if k not in ("target", "form", "NDCG@10", "HR@10")}
                print(f"# {name}: {r['form']} {params} NDCG@10 {r['NDCG@10']:.4f} "
                      f"({100 * (r['NDCG@10'] / base['NDCG@10'] - 1):+.1f} % on the count's {base['NDCG@10']:.4f})")
            best_expanded = max((r for r in rows if r["form"] == "expanded"), key=lambda r: r["NDCG@10"])
            print(f"# {name}: best expanded NDCG@10 {best_expanded['NDCG@10']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
