"""mmrec.pipelines — every file-in / file-out job of mmrec, each a config dataclass plus one function
that returns a report. The library packages hold the models and algorithms;
the jobs read and write the files between them:

| job | module | command |
|---|---|---|
| embedding extraction | :mod:`mmrec.pipelines.extract` | ``mmrec extract`` |
| QARM alignment | :mod:`mmrec.pipelines.align` | ``mmrec align`` |
| codes | :mod:`mmrec.pipelines.quantize` | ``mmrec quantize`` |
| FAISS / MISS-tree indexes, tree scorer | :mod:`mmrec.pipelines.index` | ``mmrec index build|add|search|eval|serve|train-tree`` |
| gifting graphs, GIE, GraphCL | :mod:`mmrec.pipelines.graph` | ``mmrec graph build|expand|train|export`` |
| cross-domain models | :mod:`mmrec.pipelines.cdr` (+ :mod:`mmrec.crossdomain.files`) | ``mmrec cdr train|evaluate|export`` |
| rankers | :mod:`mmrec.pipelines.rank` | ``mmrec rank train`` |
| live streaming (GTR, MFQ, GIE) | :mod:`mmrec.pipelines.live` | ``mmrec live train`` |
| hyper-parameter search (Optuna) | :mod:`mmrec.pipelines.tune` | ``mmrec tune`` |
| the whole chain | :mod:`mmrec.pipelines.demo` | ``mmrec demo`` |

Every training job trains through :func:`mmrec.training.fit`.
"""
