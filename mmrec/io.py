"""Atomic file writes: a temp file beside the target, fsync, then rename; checked Parquet opening.

A killed job leaves either the old file or the new one, never half of one; temp names start with
``.tmp-`` so resumable jobs can ignore them. :func:`open_parquet` opens an input Parquet file with one
clear error for a missing path or a file that is not Parquet; :func:`read_safetensors` does the same
for safetensors files and returns the JSON that mmrec writes under the metadata key ``mmrec``.

:func:`output_folder` is how a job claims its output folder: checked writable before any work, and
on failure nothing the job created is left there (a folder it made is removed, a folder that existed
keeps exactly the entries it had), so no half-written output looks like a result.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow.parquet as pq
    import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the target's folder; on success rename it over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}.", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open()`` for writing, committed by rename only if the block ends without error."""
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


@contextlib.contextmanager
def output_folder(out: str | os.PathLike, what: str = "output folder") -> Iterator[Path]:
    """Claim the job's output folder ``out`` for the block: created (with its parents) and probed with a
    temp file first, so a read-only or full disk fails before any work, as an :class:`OSError` naming
    the folder. If the block raises, the folders it created are removed and a folder that existed
    loses only the entries that were not there before. A path that is a file is a UsageError."""
    from mmrec.errors import UsageError

    out = Path(out)
    first_missing = None
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise UsageError(f"{what} {out}: {folder} is a file, not a folder")
            break
        first_missing = folder
    before = None if first_missing is not None else set(os.listdir(out))
    try:
        out.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryFile(prefix=".tmp-probe.", dir=out):
                pass
        except OSError as err:  # name the folder, not the probe's random name
            raise OSError(err.errno, f"cannot write into the {what}: {err.strerror}", str(out)) from None
        yield out
    except Exception:
        if first_missing is not None:
            shutil.rmtree(first_missing, ignore_errors=True)
        elif out.is_dir():
            for name in set(os.listdir(out)) - before:
                path = out / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        raise


def write_json(target: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(target, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def open_parquet(path: str | os.PathLike, what: str = "Parquet file") -> pq.ParquetFile:
    """Open ``path`` for reading; UsageError naming ``what`` if it is missing, InputError if not Parquet."""
    import pyarrow.parquet as pq

    from mmrec.errors import InputError, UsageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} not found: {path}")
    try:
        return pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path}: not a Parquet file ({err})") from None


def read_safetensors(path: str | os.PathLike, what: str = "safetensors file") -> tuple[dict[str, torch.Tensor], Any]:
    """``(tensors, meta)`` of a safetensors file: ``meta`` is the JSON under the metadata key ``mmrec``
    (None when absent). UsageError naming ``what`` if the file is missing, InputError if unreadable."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from mmrec.errors import InputError, UsageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("mmrec", "null"))
        return load_file(str(path)), meta
    except Exception as err:  # safetensors and json raise several types for a damaged file
        raise InputError(f"{path}: not a readable safetensors file ({err})") from None


def finite_json(obj: Any) -> Any:
    """``obj`` as it reads back from JSON: NaN -> None, tuples -> lists, recursively (a report that
    equals its file; JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj
