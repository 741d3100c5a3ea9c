"""item codes in the formats of other projects (LC-Rec / MiniOneRec .index.json, RecBole)

Export codes.parquet of `mmrec quantize` (or an .index.json) as LC-Rec / LETTER / MiniOneRec's <DS>.index.json,
a RecBole atomic item file or codes.parquet. Every command that reads codes also reads an .index.json.
"""

from __future__ import annotations

import argparse

from mmrec.cli._args import Commands, config_from_args, emit
from mmrec.pipelines.codes import ExportJob

cli = Commands("codes", __doc__)


@cli.command(
    "export",
    arguments={
        "--codes": "codes file: codes.parquet (mmrec quantize) or <DS>.index.json",
        "--out": "output file (<DS>.index.json for lcrec)",
    },
    configs=(ExportJob,),
)
def _export(args: argparse.Namespace) -> int:
    """write codes as LC-Rec's <DS>.index.json, a RecBole item file or codes.parquet

    lcrec: {"item index": ["<a_12>", "<b_3>", "<c_200>"]} with item indexes in the order of --data (an LC-Rec
    <DS>.item.json, its folder, or a `mmrec seq import` folder), else the codes' row numbers; mmrec's id map
    <DS>.keys.json is written beside it, so reading the file back gives the same keys.
    """
    from mmrec.pipelines.codes import export_codes

    report = export_codes(args.codes, args.out, config_from_args(args, ExportJob, what="codes export"))
    return emit(args, report, f"{report['items']:,} items, {report['levels']} levels -> {', '.join(report['files'])}")
