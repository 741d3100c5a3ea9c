"""Every registered ranker can fit one small batch: the wiring lets gradients reach what they must."""

import pytest
import torch

from mmrec.rankers import RANKERS, masked_bce
from mmrec.rankers.metrics import auc


@pytest.mark.parametrize("name", [n for n in RANKERS.names() if n != "gtr"])  # gtr takes live data: test_gtr.py
def test_ranker_overfits_a_small_batch(name, tiny_schema, tiny_batch):
    torch.manual_seed(0)
    config = {"task_groups": [["click"], ["like", "follow"]]} if name == "home" else {}
    model = RANKERS.get(name)(tiny_schema, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = tiny_batch
    if name == "esmm":  # a conversion label is ESMM's click-and-convert label y & z: 1 only on clicked rows
        batch.labels[:, 1:] *= batch.labels[:, :1]
    first = None
    for _ in range(150):
        loss, _ = masked_bce(model(batch), batch.labels, batch.label_mask)
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        final, _ = masked_bce(model(batch), batch.labels, batch.label_mask)
        scores = model(batch)
    assert float(final) < 0.1 * first
    for k in range(len(tiny_schema.tasks)):
        rows = batch.label_mask[:, k]
        assert auc(batch.labels[rows, k].numpy(), scores[rows, k].numpy()) == 1.0
