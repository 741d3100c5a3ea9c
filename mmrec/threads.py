"""The one choice of CPU threads for training and extraction: ``--threads`` on every such command.

torch's own default is one thread per core of the machine, whether other processes use those cores
or not; on a busy 2-core machine that made ``rank train`` 7x slower than one thread. So the default,
:func:`default_threads`, starts from the cores this process may run on (``os.sched_getaffinity``,
which honours ``taskset`` and container CPU sets), leaves out the cores that the 1-minute load
average says are busy, and caps the result at :data:`MAX_DEFAULT_THREADS` (the small models here
gain nothing from more). :func:`use_threads` sets torch's intra-op threads for a block and puts the
caller's value back after; :func:`announce_threads` prints the number when the inputs are read and
the work starts (so a bad input is still one error line), as every training command does when it
shows progress.

``None`` always means "choose": the default above. Extraction takes a ``threads`` option the same
way: ``with use_threads(config.threads) as n:`` around the job, ``announce_threads(n, config.threads)``
once the shards are listed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from mmrec.errors import UsageError

MAX_DEFAULT_THREADS = 8
THREADS_HELP = (f"torch CPU threads; none = the cores available to this process minus the busy ones, at most "
                f"{MAX_DEFAULT_THREADS} (printed at the start)")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Threads when none are asked: available cores minus those the load average shows busy, at least
    1, at most :data:`MAX_DEFAULT_THREADS`."""
    cores = available_cores()
    try:
        busy = int(os.getloadavg()[0])
    except (AttributeError, OSError):
        busy = 0
    return max(1, min(cores - busy, cores, MAX_DEFAULT_THREADS))


def resolve_threads(threads: int | None, *, what: str = "threads") -> int:
    """``threads``, checked, or :func:`default_threads` for None."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UsageError(f"{what} must be an integer >= 1, got {threads!r}")
    return threads


@contextlib.contextmanager
def use_threads(threads: int | None, *, what: str = "threads") -> Iterator[int]:
    """Run the block with ``threads`` torch CPU threads (None: :func:`default_threads`); yields the number."""
    import torch

    n = resolve_threads(threads, what=what)
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)


def announce_threads(n: int, asked: int | None) -> None:
    """Print on stderr (stdout is the report's) the ``n`` threads a job runs with, and why that number."""
    why = "as asked: --threads or the config" if asked is not None else (
        f"default: {available_cores()} cores available minus busy ones, at most {MAX_DEFAULT_THREADS}; --threads to change")
    print(f"mmrec: using {n} CPU thread{'s' if n != 1 else ''} ({why})", file=sys.stderr, flush=True)


__all__ = ["MAX_DEFAULT_THREADS", "THREADS_HELP", "available_cores", "default_threads", "announce_threads", "resolve_threads", "use_threads"]
