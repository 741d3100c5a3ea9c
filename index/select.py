"""Automatic FAISS index choice: a pure function of (n, dim, memory budget, latency budget).

The families, in order of preference (the first that fits both budgets wins; HNSW only up to
``HNSW_MAX_N`` vectors), with the memory each needs for ``n`` vectors of dimension ``d`` (bytes;
``ids`` are FAISS's int64 ids in inverted lists):

==============  =============================================  ============================================
family          factory string                                 memory (bytes)
==============  =============================================  ============================================
flat            ``Flat``                                       ``4·d·n``
hnsw            ``HNSW32``                                     ``(4·d + 2·M·4 + 12)·n``, M = 32 (level-0
                                                               links are 2·M int32; +12 for levels/offsets)
ivf_flat        ``IVF{nlist},Flat``                            ``(4·d + 8)·n + 4·d·nlist``
ivf_sq8         ``IVF{nlist},SQ8``                             ``(d + 8)·n + 4·d·nlist + 8·d``
ivf_pq          ``OPQ{m}_{d'},IVF{nlist},PQ{m}``               ``(m + 8)·n + 4·d'·nlist + 4·d·d' + 4·256·d'``
==============  =============================================  ============================================

``nlist`` is the power of two nearest to ``4·√n`` (FAISS's guideline of 4·√n to 16·√n lists), capped so
that every list gets at least 39 training points; above 16384 lists the coarse quantizer becomes
``IVF{nlist}_HNSW32``. For PQ, ``m`` is the largest of 64, 48, 32, 24, 16, 8, 4 (≤ d) that fits and
``d' = m·⌈d/m⌉``.

Latency is estimated for one query on one core from a scan rate ``SCAN_RATE`` (vector components
compared per millisecond; 3e6 measured for FAISS flat search on this project's 2-core CPU box):
flat ``n·d``; HNSW ``2·M·ef·d`` with ``ef = 128``; IVF ``nlist·d + (n/FRACTION)·c`` where the scan
visits ``1/FRACTION = 1/32`` of the lists and ``c`` is ``d`` per vector (Flat, SQ8) or ``m`` (PQ
lookup-table adds). These are coarse estimates used only to rule families out; the built index is
then tuned and its real latency measured and recorded. [I] IVF-SQ8 sits between IVF-Flat and
OPQ-IVF-PQ: at a quarter of the memory it keeps nearly IVF-Flat's recall, which PQ codes do not.

[I] HNSW is not chosen above ``HNSW_MAX_N = 500_000`` vectors, where IVF-Flat takes its place when it
fits. Measured on 1M x 128 clustered vectors (bench/index.py, 2 cores): HNSW32 (FAISS's default
efConstruction 40) took 130-190 s to add and needed efSearch ~4000 to reach recall@10 0.97, at
10-28 ms per query (machine under load), while IVF4096,Flat built in ~80 s and reached 0.97 at nprobe 4 and 1.0 at
nprobe 8. HNSW's graph search degrades with the number of clusters it has to navigate, which neither
a uniform sample nor a density-preserving slice of 50k vectors showed (HNSW reached 0.97 at
efSearch 44 there), so the choice is made on size; IVF also builds faster, adds cheaply and
memory-maps.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from mmrec.errors import UsageError

SCAN_RATE = 3e6  # vector components compared per ms, one core
HNSW_M = 32
HNSW_MAX_N = 500_000
HNSW_EF = 128
IVF_FRACTION = 32
PQ_M = (64, 48, 32, 24, 16, 8, 4)
FAMILIES = ("flat", "hnsw", "ivf_flat", "ivf_sq8", "ivf_pq")
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_memory(value: str | int | float) -> int:
    """Bytes from ``1073741824``, ``"512M"``, ``"1G"``, ``"1.5GB"`` (binary units, as autofaiss)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        size = float(value)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", str(value).upper())
        if not match:
            raise UsageError(f"cannot read memory size {value!r}; use e.g. 512M, 1G, 2.5G or a byte count")
        size = float(match.group(1)) * _UNITS[match.group(2)]
    if size <= 0:
        raise UsageError(f"memory size must be > 0, got {value!r}")
    return int(size)


def default_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: power of two nearest 4·√n, at least 39 vectors per list."""
    nlist = 2 ** round(math.log2(max(4 * math.sqrt(n), 1)))
    return int(max(1, min(nlist, n // 39)))


def _coarse(nlist: int) -> str:
    return f"IVF{nlist}_HNSW32" if nlist > 16384 else f"IVF{nlist}"


@dataclass(frozen=True)
class Candidate:
    """One family sized for the data: its factory string and estimated memory and latency."""

    family: str
    factory: str
    memory_bytes: int
    est_query_ms: float
    fits_memory: bool = False
    fits_latency: bool = False
    fits_size: bool = True  # HNSW: n <= HNSW_MAX_N


@dataclass(frozen=True)
class Choice:
    """The chosen factory string, why, and every family that was considered."""

    factory: str
    family: str
    memory_bytes: int
    est_query_ms: float
    nlist: int | None
    reason: str
    candidates: list[Candidate] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _pq_candidate(n: int, d: int, nlist: int, budget: int) -> Candidate:
    """The largest PQ code size that fits ``budget`` (the smallest one when none fits)."""
    options = [m for m in PQ_M if m <= d]
    for m in options:
        d2 = m * math.ceil(d / m)
        memory = (m + 8) * n + 4 * d2 * nlist + 4 * d * d2 + 4 * 256 * d2
        if memory <= budget or m == options[-1]:
            return Candidate(
                "ivf_pq",
                f"OPQ{m}_{d2},{_coarse(nlist)},PQ{m}",
                memory,
                (nlist * d + n / IVF_FRACTION * m + 256 * d2) / SCAN_RATE,
            )
    raise AssertionError("unreachable: PQ_M ends with 4")


def candidates(n: int, dim: int, *, max_memory: str | int = "1G", max_query_ms: float | None = 10.0) -> list[Candidate]:
    """Every family sized for ``n`` vectors of ``dim``, with budget checks, in order of preference."""
    if n < 1 or dim < 1:
        raise UsageError(f"need at least one vector of dim >= 1, got n={n}, dim={dim}")
    budget = parse_memory(max_memory)
    d = dim
    nlist = default_nlist(n)
    ivf_scan = nlist * d + n / IVF_FRACTION * d
    rows = [
        Candidate("flat", "Flat", 4 * d * n, n * d / SCAN_RATE),
        Candidate("hnsw", f"HNSW{HNSW_M}", (4 * d + 2 * HNSW_M * 4 + 12) * n, 2 * HNSW_M * HNSW_EF * d / SCAN_RATE),
        Candidate("ivf_flat", f"{_coarse(nlist)},Flat", (4 * d + 8) * n + 4 * d * nlist, ivf_scan / SCAN_RATE),
        Candidate("ivf_sq8", f"{_coarse(nlist)},SQ8", (d + 8) * n + 4 * d * nlist + 8 * d, ivf_scan / SCAN_RATE),
        _pq_candidate(n, d, nlist, budget),
    ]
    out = []
    for c in rows:
        fits_latency = max_query_ms is None or c.est_query_ms <= max_query_ms
        fits_size = c.family != "hnsw" or n <= HNSW_MAX_N
        out.append(Candidate(c.family, c.factory, c.memory_bytes, round(c.est_query_ms, 4), c.memory_bytes <= budget, fits_latency, fits_size))
    return out


def choose_index(n: int, dim: int, *, max_memory: str | int = "1G", max_query_ms: float | None = 10.0) -> Choice:
    """The first family (flat → HNSW (n ≤ 500k) → IVF-Flat → IVF-SQ8 → OPQ-IVF-PQ) within both budgets.

    Above 500k vectors HNSW comes last: taken only when it alone meets the latency estimate. When every
    family that fits the memory misses the latency estimate, the fastest of them is taken and the
    reason says so. Raises :class:`UsageError` when not even the smallest PQ code fits.
    """
    rows = candidates(n, dim, max_memory=max_memory, max_query_ms=max_query_ms)
    nlist = default_nlist(n)
    budget = parse_memory(max_memory)
    fitting = [c for c in rows if c.fits_memory]
    if not fitting:
        smallest = min(rows, key=lambda c: c.memory_bytes)
        raise UsageError(
            f"no index of {n} vectors x {dim} fits max_memory={max_memory!r} ({budget} bytes); "
            f"the smallest, {smallest.factory}, needs about {smallest.memory_bytes} bytes"
        )
    both = sorted((c for c in fitting if c.fits_latency), key=lambda c: not c.fits_size)  # stable: order kept
    if both:
        pick = both[0]
        reason = f"{pick.family}: first family within {budget} bytes and ~{max_query_ms} ms/query"
        if not pick.fits_size:
            reason += f" (HNSW above {HNSW_MAX_N} vectors: no other family meets the latency)"
    else:
        pick = min(fitting, key=lambda c: c.est_query_ms)
        reason = f"{pick.family}: fastest within {budget} bytes; no family is estimated under {max_query_ms} ms/query"
    return Choice(
        factory=pick.factory,
        family=pick.family,
        memory_bytes=pick.memory_bytes,
        est_query_ms=pick.est_query_ms,
        nlist=nlist if pick.family.startswith("ivf") else None,
        reason=reason,
        candidates=rows,
    )


def family_of(factory: str) -> str:
    """The family of a factory string (``"other"`` for anything outside the five)."""
    f = factory.replace(" ", "")
    if f == "Flat":
        return "flat"
    if re.fullmatch(r"HNSW\d+(,Flat)?", f):
        return "hnsw"
    if "IVF" in f and f.endswith(",Flat"):
        return "ivf_flat"
    if "IVF" in f and f.endswith(",SQ8"):
        return "ivf_sq8"
    if "IVF" in f and ",PQ" in f:
        return "ivf_pq"
    return "other"
