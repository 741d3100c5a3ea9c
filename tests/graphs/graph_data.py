"""SYNTHETIC live behaviour logs in the issue-8 contract's schema, with planted co-gifting communities."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

LOG_TYPES = {"user_id": pa.int64(), "item_id": pa.string(), "author_id": pa.int64(), "domain": pa.string(),
             "ts": pa.int64(), "watch": pa.int8(), "like": pa.int8(), "comment": pa.int8(), "gift": pa.int8(),
             "gift_value": pa.float32()}


def log_table(rows):
    """Table from ``(user, author, watch, gift, gift_value)`` or ``(..., domain)`` tuples, in time order."""
    cols = {name: [] for name in LOG_TYPES}
    for t, row in enumerate(rows):
        user, author, watch, gift, value = row[:5]
        domain = row[5] if len(row) > 5 else "live"
        cols["user_id"].append(user)
        cols["author_id"].append(author)
        cols["item_id"].append(f"seg-{author:06d}-{t:03d}" if domain == "live" else f"video-{t:06d}")
        cols["domain"].append(domain)
        cols["ts"].append(t)
        cols["watch"].append(watch)
        cols["like"].append(0)
        cols["comment"].append(0)
        cols["gift"].append(gift)
        cols["gift_value"].append(value)
    return pa.table({name: pa.array(values, LOG_TYPES[name]) for name, values in cols.items()})


def write_log(path, rows):
    pq.write_table(log_table(rows), path, row_group_size=4)
    return path


def community_log(n_users=120, n_authors=24, n_communities=3, watches=8, gifts=3, seed=0, noise=0.05):
    """SYNTHETIC: users and authors in ``n_communities`` planted communities; each user watches
    ``watches`` and gifts ``gifts`` authors, of its own community with probability ``1 - noise``.
    Returns ``(table, user_community, author_community)``."""
    rng = np.random.default_rng(seed)
    user_c = rng.integers(0, n_communities, n_users)
    author_c = np.arange(n_authors) % n_communities
    rows = []
    for u in range(n_users):
        for n_events, gift in ((watches, 0), (gifts, 1)):
            for _ in range(n_events):
                c = user_c[u] if rng.random() > noise else rng.integers(0, n_communities)
                a = int(rng.choice(np.flatnonzero(author_c == c)))
                rows.append((u, a, 1, gift, float(rng.pareto(2.0) + 1) if gift else 0.0))
    order = rng.permutation(len(rows))
    return log_table([rows[i] for i in order]), user_c, author_c
