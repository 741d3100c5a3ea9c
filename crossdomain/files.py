"""The files of ``mmrec cdr``: pair folders, Parquet behaviour logs and item embeddings, read into a
:class:`~mmrec.crossdomain.data.CDRData`.

The pair format (the public Amazon CDR data of CDRIB / UniCDR): one folder per domain side,
``<a>_<b>/`` for domain ``a`` of the pair and ``<b>_<a>/`` for domain ``b``, each with ``train.txt`` and
``valid.txt``; one ``user<TAB>item`` per line, integer ids from 0 per domain, user ids shared by the two
domains. Users of a ``valid.txt`` are cold-start there: they have training interactions only in the
other domain.

The Parquet behaviour log (docs/file-contracts.md): columns ``user_id, item_id, domain`` plus optional task label
columns (0/1), read and schema-checked by :func:`mmrec.logs.read_log_columns`;
:func:`mmrec.crossdomain.data.log_pair` keeps the rows of the two named domains.

Item embeddings (UniCDR+ / FARM content features): an extract-layout Parquet file or folder read through
:mod:`mmrec.store`, ``key`` = ``"<domain>:<item id>"`` (raw ids of a Parquet log).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmrec.crossdomain.data import CDRData, Domain, log_pair
from mmrec.errors import InputError, UsageError

PAIRS = {"sport_cloth": ("sport", "cloth"), "game_video": ("game", "video")}


def read_pairs(path: str | Path) -> np.ndarray:
    """Read a ``user<TAB>item`` file into an ``(n, 2)`` int64 array; an error names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"pair file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise InputError(f"{path}:{number}: expected 'user<TAB>item', got {line.strip()!r}", field="line")
            try:
                user, item = int(parts[0]), int(parts[1])
            except ValueError:
                raise InputError(f"{path}:{number}: ids must be integers, got {line.strip()!r}", field="id") from None
            if user < 0 or item < 0:
                raise InputError(f"{path}:{number}: ids must be >= 0, got {line.strip()!r}", field="id")
            rows.append((user, item))
    if not rows:
        raise InputError(f"{path}: no interactions", field="line")
    return np.asarray(rows, dtype=np.int64)


def _pair_folders(data: Path, pair: str) -> tuple[tuple[str, str], tuple[Path, Path]]:
    names = PAIRS.get(pair)
    parts = pair.split("_")
    if names is None:
        if len(parts) != 2 or not all(parts):
            raise UsageError(f"pair must look like 'a_b' (e.g. {', '.join(PAIRS)}), got {pair!r}")
        names = (parts[0], parts[1])
    first, second = pair, "_".join(reversed(pair.split("_")))
    folders = (data / first, data / second)
    for folder in folders:
        if not (folder / "train.txt").is_file():
            raise UsageError(f"{folder}/train.txt not found (--data must hold the folders {first}/ and {second}/)")
    return names, folders


def load_pair(data: str | Path, pair: str) -> CDRData:
    """Load both domains of ``pair`` (``sport_cloth``: folders ``sport_cloth/`` and ``cloth_sport/``)."""
    names, folders = _pair_folders(Path(data), pair)
    domains = []
    for name, folder in zip(names, folders):
        train = read_pairs(folder / "train.txt")
        valid = read_pairs(folder / "valid.txt") if (folder / "valid.txt").is_file() else None
        n_items = int(max(train[:, 1].max(), -1 if valid is None else valid[:, 1].max())) + 1
        domains.append(Domain(name=name, folder=folder.name, n_items=n_items, train=train, valid=valid))
    n_users = int(max(max(d.train[:, 0].max(), -1 if d.valid is None else d.valid[:, 0].max()) for d in domains)) + 1
    return CDRData(domains=(domains[0], domains[1]), n_users=n_users, shared_users=common_users(folders))


def common_users(folders: tuple[Path, Path]) -> int | None:
    """The number of users shared by the pair from its ``*_data_info.txt`` files (``common user num N``:
    ids ``0..N-1`` name one person in both domains; the rest coincide by re-indexing), or None without them.

    [I] The Amazon folders of one pair carry two such files with different counts (9828 / 9928,
    2179 / 2193); the smaller one is the one the held-out users fit (their ids are all below it)."""
    counts = []
    for folder in folders:
        for info in sorted(folder.glob("*_data_info.txt")):
            for line in info.read_text(encoding="utf-8").splitlines():
                if line.startswith("common user num"):
                    counts.append(int(line.split()[-1]))
    return min(counts) if counts else None


def load_log_pair(log: str | Path, domains: tuple[str, str], *, tasks: tuple[str, ...] = ()) -> CDRData:
    """Read a Parquet behaviour log (``user_id, item_id, domain`` + ``tasks`` label columns) as a pair
    (:func:`~mmrec.crossdomain.data.log_pair`)."""
    from mmrec.logs import read_log_columns

    columns = read_log_columns(log, ["user_id", "item_id", "domain", *tasks])
    labels = np.stack([columns[t].astype(np.float32) for t in tasks], 1) if tasks else None
    return log_pair(columns["user_id"], columns["item_id"], columns["domain"], domains, labels=labels,
                    tasks=tasks, source=str(log))


def read_item_embeddings(path: str | Path, names: tuple[str, str], n_items: tuple[int, int], *,
                         column: str = "fused", vocab: tuple[list[str] | None, list[str] | None] = (None, None),
                         ) -> list[np.ndarray]:
    """Per-domain ``(n_items, E)`` float32 tables from embeddings keyed ``"<domain>:<item id>"`` (a Parquet
    file or an extract folder, :mod:`mmrec.store`); items without a row get zeros."""
    from mmrec.store import open_source

    source = open_source(path, column=column)
    out = [np.zeros((n, source.dim), np.float32) for n in n_items]
    index = [{(str(v) if voc is not None else str(i)): i for i, v in enumerate(voc or range(n))}
             for voc, n in zip(vocab, n_items)]
    found = 0
    for batch in source.batches():
        for key, vec in zip(batch.keys.to_pylist(), batch.vectors):
            domain, _, item = str(key).partition(":")
            if domain in names:
                d = names.index(domain)
                if item in index[d]:
                    out[d][index[d][item]] = vec
                    found += 1
    if not found:
        raise InputError(f"{path}: no key matches '<domain>:<item>' for domains {list(names)}", field="key")
    return out


def load_data(data: str | Path, pair: str, *, tasks: tuple[str, ...] = (), item_emb: str = "",
              emb_column: str = "fused") -> CDRData:
    """The pair named ``pair`` from a folder of pair folders or a Parquet log (``pair`` = ``"a_b"`` names
    its two domains), with the item embeddings of ``item_emb`` attached when given."""
    path = Path(data)
    if path.suffix == ".parquet":
        names = pair.split("_")
        if len(names) != 2:
            raise UsageError(f"with a Parquet log, --pair names its two domains as 'a_b', got {pair!r}")
        out = load_log_pair(path, (names[0], names[1]), tasks=tasks)
    else:
        out = load_pair(path, pair)
    if item_emb:
        out.item_content = tuple(read_item_embeddings(
            item_emb, tuple(d.name for d in out.domains), tuple(d.n_items for d in out.domains), column=emb_column,
            vocab=tuple(d.item_vocab for d in out.domains)))
    return out


def read_heldout(test: str | Path, data: CDRData, domain: int) -> np.ndarray:
    """A ``user<TAB>item`` file of ``domain`` as indices: integers as they are, or raw ids through the
    vocabularies of a Parquet log's data."""
    test = Path(test)
    if data.user_vocab is None:
        return read_pairs(test)
    users = {u: i for i, u in enumerate(data.user_vocab)}
    items = {v: i for i, v in enumerate(data.domains[domain].item_vocab)}
    rows = []
    for number, line in enumerate(test.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[0] not in users or parts[1] not in items:
            raise UsageError(f"{test}:{number}: expected 'user<TAB>item' with ids known to the run, got {line!r}")
        rows.append((users[parts[0]], items[parts[1]]))
    if not rows:
        raise UsageError(f"{test}: no pairs")
    return np.asarray(rows, dtype=np.int64)
