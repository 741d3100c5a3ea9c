"""Shared test data of the ranker tests."""

TASKS = ("click", "like", "follow")
# a SYNTHETIC log of mmrec.synthetic.rank_sim small enough for a one-epoch run in seconds
TINY_SIM = {"users": 40, "items": 80, "authors": 10, "impressions": 20, "seed": 1}


def tiny_rank_config() -> dict:
    """A one-epoch PEPNet config over a simulate() folder (its content embeddings and log)."""
    return {
        "data": {"log": "behaviour.parquet", "tasks": list(TASKS), "history": {"length": 5}},
        "features": [{"name": "content", "kind": "embeddings", "path": "emb", "dim": 32}],
        "model": {"name": "pepnet", "embedding_dim": 8, "tower": [16]},
        "optim": {"epochs": 1, "batch_size": 256, "threads": 1},
        "out": "run",
    }
