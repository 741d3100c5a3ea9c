"""AUC, UAUC and GAUC on hand-checked cases."""

import math

import numpy as np
import pytest

from mmrec.rankers import auc, metrics_table, uauc_gauc
from mmrec.rankers.metrics import format_table


def test_auc_counts_pairs_and_half_ties():
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])) == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert math.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_gauc_weights_users_by_impressions_and_skips_one_class_users():
    labels = np.array([0, 0, 1, 1, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.1, 0.9, 0.2, 0.3, 0.4])
    users = np.array(["a", "a", "a", "a", "b", "b", "c", "c", "c"])  # a: AUC 3/4 over 4; b: 1 over 2; c: positives only
    uauc, gauc, counted = uauc_gauc(labels, scores, users)
    assert counted == 2
    assert uauc == pytest.approx((0.75 + 1.0) / 2)
    assert gauc == pytest.approx((4 * 0.75 + 2 * 1.0) / 6)


def test_metrics_table_is_per_task_and_domain_over_observed_labels():
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    mask = np.array([[1, 1], [1, 1], [1, 0], [1, 0]], bool)
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.5], [0.3, 0.5]])
    table = metrics_table(labels, mask, scores, np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), ["click", "follow"], ["live", "video"])
    assert set(table["click"]) == {"all", "live", "video"} and set(table["follow"]) == {"all", "live"}
    assert table["click"]["all"]["auc"] == 1.0 and table["follow"]["live"]["n"] == 2
    assert table["click"]["video"]["gauc"] == 1.0 and table["click"]["all"]["users"] == 2
    text = format_table(table)
    assert text.splitlines()[0].split()[:5] == ["task", "domain", "AUC", "UAUC", "GAUC"] and len(text.splitlines()) == 6
