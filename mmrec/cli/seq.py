"""import sequential-recommendation data (LC-Rec json, RecBole atomic files)

Sequences of public data sets in mmrec's contracts: behaviour.parquet (ts = position), id vocabularies and
webdataset item shards with the item text for `mmrec extract`.
"""

from __future__ import annotations

import argparse

from mmrec.cli._args import Commands, config_from_args, emit
from mmrec.pipelines.seq_import import ImportJob

cli = Commands("seq", __doc__)


@cli.command(
    "import",
    arguments={
        "--data": "folder holding the source files",
        "--name": "data set name DS (the files' prefix)",
        "--out": "output data folder",
    },
    configs=(ImportJob,),
)
def _import(args: argparse.Namespace) -> int:
    """read <DS>.inter.json (+ .item.json) or RecBole <DS>.inter (+ .item) into a data folder

    Write behaviour.parquet (user_id, item_id, ts = position, raw ids), users.parquet, items.parquet, seq.json
    and, when item text exists, items-*.tar shards (txt, json) for `mmrec extract --image none --audio none`.
    """
    from mmrec.pipelines.seq_import import import_sequences

    report = import_sequences(args.data, args.name, args.out, config_from_args(args, ImportJob, what="seq import"))
    return emit(args, report, f"{report['dataset']}: {report['users']:,} users, {report['items']:,} items, "
                f"{report['interactions']:,} interactions (mean length {report['mean_length']}); skipped "
                f"{report['skipped_users']} user(s) with fewer than {report['min_length']} items; "
                f"{len(report['shards'])} item shard(s) with text for {report['items_with_text']:,} items -> {args.out}")
