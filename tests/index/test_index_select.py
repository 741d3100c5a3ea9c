"""Automatic index choice: expected family per size and budget, memory formulas, budget errors."""

import pytest

from mmrec.errors import UsageError
from mmrec.index import choose_index, parse_memory
from mmrec.index.select import candidates, default_nlist, family_of


@pytest.mark.parametrize(
    "n,dim,memory,ms,family,factory",
    [
        (10_000, 128, "1G", 10, "flat", "Flat"),  # small: exact search is fast enough
        (400_000, 128, "1G", 10, "hnsw", "HNSW32"),  # flat is ~17 ms/query; HNSW32 needs ~310 MB
        (1_000_000, 128, "1G", 10, "ivf_flat", "IVF4096,Flat"),  # flat ~43 ms/query; HNSW only up to 500k
        (1_000_000, 128, "1G", None, "flat", "Flat"),  # no latency budget: flat fits in 512 MB
        (1_000_000, 128, "600M", 10, "ivf_flat", "IVF4096,Flat"),
        (1_000_000, 128, "200M", 10, "ivf_sq8", "IVF4096,SQ8"),
        (10_000_000, 128, "600M", 10, "ivf_pq", "OPQ48_144,IVF16384,PQ48"),
        (100_000_000, 96, "3G", 10, "ivf_pq", "OPQ24_96,IVF32768_HNSW32,PQ24"),
    ],
)
def test_auto_choice_gives_expected_family(n, dim, memory, ms, family, factory):
    choice = choose_index(n, dim, max_memory=memory, max_query_ms=ms)
    assert (choice.family, choice.factory) == (family, factory)
    assert choice.memory_bytes <= parse_memory(memory)
    assert family_of(choice.factory) == family


def test_memory_formulas_per_family():
    n, d = 1_000_000, 128
    rows = {c.family: c for c in candidates(n, d, max_memory="100G")}
    nlist = default_nlist(n)
    assert nlist == 4096
    assert rows["flat"].memory_bytes == 4 * d * n
    assert rows["hnsw"].memory_bytes == (4 * d + 2 * 32 * 4 + 12) * n
    assert rows["ivf_flat"].memory_bytes == (4 * d + 8) * n + 4 * d * nlist
    assert rows["ivf_sq8"].memory_bytes == (d + 8) * n + 4 * d * nlist + 8 * d
    assert rows["ivf_pq"].factory == "OPQ64_128,IVF4096,PQ64"
    assert rows["ivf_pq"].memory_bytes == (64 + 8) * n + 4 * 128 * nlist + 4 * d * 128 + 4 * 256 * 128


def test_latency_budget_rules_out_flat_and_falls_back_to_the_fastest():
    assert choose_index(200_000, 128, max_memory="1G", max_query_ms=100).family == "flat"
    assert choose_index(200_000, 128, max_memory="1G", max_query_ms=1).family == "hnsw"
    big = choose_index(2_000_000, 128, max_memory="4G", max_query_ms=1)  # only HNSW is estimated under 1 ms
    assert big.family == "hnsw" and "no other family" in big.reason
    choice = choose_index(200_000, 128, max_memory="50M", max_query_ms=0.001)  # nothing is that fast
    assert choice.family == "ivf_pq" and "no family" in choice.reason


def test_no_index_fits_a_tiny_budget():
    with pytest.raises(UsageError, match="no index of 1000000000 vectors"):
        choose_index(1_000_000_000, 128, max_memory="1G")


@pytest.mark.parametrize("text,expected", [("1G", 1024**3), ("512M", 512 * 1024**2), ("1.5GB", int(1.5 * 1024**3)), (4096, 4096), ("2k", 2048)])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1G", "0", ""])
def test_parse_memory_rejects_nonsense(bad):
    with pytest.raises(UsageError):
        parse_memory(bad)
