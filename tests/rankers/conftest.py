import pytest
import torch

from mmrec.rankers.features import InputSchema, RankBatch

TASKS = ("click", "like", "follow")
DOMAINS = ("live", "mall", "video")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small models on 2 cores shared with other jobs run fastest on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_schema():
    return InputSchema(tasks=TASKS, domains=DOMAINS, sparse={"user_id": 9, "item_id": 17, "author_id": 5},
                       codes={"sid": (4, 4)}, dense={"content": 6}, history=5)


def make_batch(schema: InputSchema, n: int, seed: int = 0) -> RankBatch:
    """A random batch of ``n`` rows for ``schema``; ``follow`` is observed in domain 0 only."""
    g = torch.Generator().manual_seed(seed)
    T, U = schema.history, 12  # history length, distinct history items

    def ids(size, shape):
        return torch.randint(1, size, shape, generator=g)

    domain = torch.randint(0, len(schema.domains), (n,), generator=g)
    mask = torch.ones(n, len(schema.tasks), dtype=torch.bool)
    mask[:, -1] = domain == 0
    history_mask = torch.arange(T)[None, :] < torch.randint(0, T + 1, (n, 1), generator=g)
    return RankBatch(
        sparse={name: ids(size, (n,)) for name, size in schema.sparse.items()},
        codes={name: torch.randint(0, min(sizes), (n, len(sizes)), generator=g) for name, sizes in schema.codes.items()},
        dense={name: torch.randn(n, d, generator=g) for name, d in schema.dense.items()},
        history={"item_id": ids(schema.sparse["item_id"], (U,)),
                 **{name: torch.randint(0, min(s), (U, len(s)), generator=g) for name, s in schema.codes.items()},
                 **{name: torch.randn(U, d, generator=g) for name, d in schema.dense.items()}},
        history_index=torch.randint(0, U, (n, T), generator=g), history_mask=history_mask, domain=domain, group=torch.randint(0, 8, (n,), generator=g),
        labels=torch.randint(0, 2, (n, len(schema.tasks)), generator=g).float(), label_mask=mask,
    )


@pytest.fixture
def tiny_batch(tiny_schema):
    return make_batch(tiny_schema, 64)


@pytest.fixture
def batch_factory():
    return make_batch
