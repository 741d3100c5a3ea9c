"""SYNTHETIC: QARM pairs mined from an imported data set's training part never touch a validation item."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from seq_data import planted_groups, write_lcrec

from mmrec.pipelines.align import write_pairs
from mmrec.pipelines.seq_import import import_sequences
from mmrec.quantization.pairs import PairConfig
from mmrec.retrieval.data import ITEM_KEY


@pytest.mark.parametrize("positive, leaks", [("train", False), ("click", True)])
def test_pairs_mined_from_the_training_part_never_hold_a_validation_item(tmp_path, positive, leaks):
    sequences, group_of = planted_groups(users=200)  # the rare items occur only as validation targets
    write_lcrec(tmp_path / "src", "G", sequences)
    import_sequences(tmp_path / "src", "G", tmp_path / "data")
    keys = [ITEM_KEY.format(i) for i in range(len(group_of))]
    rng = np.random.default_rng(0)
    vectors = (np.eye(group_of.max() + 1)[group_of] + 0.1 * rng.standard_normal((len(keys), group_of.max() + 1))).astype(np.float32)
    write_pairs(tmp_path / "data", keys, vectors, tmp_path / "pairs.parquet", PairConfig(positive=(positive,)), progress=False)
    pairs = pq.read_table(tmp_path / "pairs.parquet").to_pydict()
    rare = {ITEM_KEY.format(g * 6 + 5) for g in range(group_of.max() + 1)}
    assert len(pairs["left"]) > 100
    touched = rare & (set(pairs["left"]) | set(pairs["right"]))
    assert bool(touched) == leaks  # click (every row) mines the validation targets; train never does
