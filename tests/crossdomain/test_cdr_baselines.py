import numpy as np
import pytest
import torch
from cdr_synth import write_partner_pair

from mmrec.crossdomain import CDRConfig
from mmrec.crossdomain.baselines import (
    BASELINES,
    CoCount,
    CrossEASE,
    ItemKNN,
    binary_matrix,
    evaluate_baseline,
    fit_baseline,
    tune_baseline,
)
from mmrec.crossdomain.files import load_pair
from mmrec.crossdomain.train import build_model
from mmrec.pipelines.cdr import train_cdr

# source domain rows (user, item) and target domain rows; user 3 is cold in the target
SRC = np.array([[0, 0], [0, 1], [1, 0], [2, 1], [3, 0], [4, 2]])
TGT = np.array([[0, 0], [1, 0], [1, 1], [2, 1], [5, 2]])


def _matrices():
    return binary_matrix(SRC, 6, 3), binary_matrix(TGT, 6, 3)


def test_count_equals_a_hand_count_and_leaves_the_user_out():
    count = CoCount(*_matrices())
    # overlap users 0, 1, 2: W[j, i] = users who took source j and target i
    hand = np.array([[2, 1, 0],   # source 0: users 0, 1 took target 0; user 1 target 1
                     [1, 1, 0],   # source 1: user 0 -> target 0, user 2 -> target 1
                     [0, 0, 0]])  # source 2: user 4 has no target row, user 5 no source row
    assert np.array_equal(count.g.toarray(), hand)
    users = np.array([3, 0, 4])
    assert np.array_equal(count.user_scores(users), [[2, 1, 0], [3, 2, 0], [0, 0, 0]])
    # leave one out: user 0 (sources {0, 1}, target {0}) loses its own 2 co-counts on target 0 only
    items = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 2]])
    assert np.array_equal(count.pair_scores(users, items), [[2, 1, 0], [1, 2, 0], [0, 0, 0]])
    many = np.tile(items, 30)  # 90 items per user: the sparse-product path gives the same counts
    assert np.array_equal(count.pair_scores(users, many), np.tile([[2, 1, 0], [1, 2, 0], [0, 0, 0]], 30))
    # ties (user 4 has no signal) are broken by target popularity: targets 0, 1 have 2 users, 2 has 1
    s = count.scores(np.array([4]), np.array([[2, 0]]))
    assert s[0, 1] > s[0, 0] and s.max() < 1e-5


def test_ease_equals_its_closed_form():
    x_src, x_tgt = _matrices()
    lam = 0.7
    ease = CrossEASE(x_src, x_tgt, lam=lam, max_items=10)
    overlap = [0, 1, 2]
    xs, xt = x_src.toarray()[overlap], x_tgt.toarray()[overlap]
    used = xs.sum(0) > 0  # source item 2 has no overlap user
    w = np.zeros((3, 3))
    w[used] = np.linalg.solve(xs[:, used].T @ xs[:, used] + lam * np.eye(used.sum()), xs[:, used].T @ xt)
    users = np.arange(6)
    assert np.allclose(ease.user_scores(users), x_src.toarray() @ w)
    assert not np.allclose(w, 0) and ease.user_scores(np.array([3]))[0, 0] > ease.user_scores(np.array([3]))[0, 1]


def test_item_knn_keeps_the_k_most_similar_sources_per_target():
    knn = ItemKNN(*_matrices(), k=1)
    w = knn.g.toarray()
    assert (np.count_nonzero(w, 0) <= 1).all()
    # target 0: cos(s0) = 2 / sqrt(2 * 2) = 1 beats cos(s1) = 1 / sqrt(2 * 2); target 1: s0 and s1 tie, s0 kept
    assert np.isclose(w[0, 0], 1.0) and w[1, 0] == 0 and np.isclose(w[0, 1], 0.5)
    assert BASELINES.names() == ["count", "ease", "item_knn"]


@pytest.fixture(scope="module")
def partner(tmp_path_factory):
    root = tmp_path_factory.mktemp("cdr_partner")
    write_partner_pair(root)
    return root


def test_baselines_recover_planted_partners_on_the_models_candidates(partner):
    data = load_pair(partner, "aa_bb")
    # SYNTHETIC: a cold bb user's held-out items are the partners of its aa items; a partner is
    # linked when another of the 740 training users took the same aa item (p = 1 - e^-2.5 = 0.92), but
    # a partner linked once ties with the other partners of that user's items (chance HR@10 is 0.01)
    count = evaluate_baseline(fit_baseline("count", data, 1), data, 1)
    assert count["HR@10"] > 0.5 and count["n"] == 120
    params, ease = tune_baseline("ease", data, 1, "lam", (1.0, 10.0))
    assert params["lam"] in (1.0, 10.0) and ease["HR@10"] > 0.5


@pytest.mark.parametrize("model", ["unicdr+", "farm"])
def test_the_count_residual_beats_the_same_model_without_it(partner, model):
    # SYNTHETIC, signal only in co-interactions (a random permutation of 1,200 partners): dim-8 item
    # embeddings trained 2 epochs cannot memorise it, the leave-one-out count residual carries it
    fast = dict(model=model, dim=8, maxlen=4, batch_size=256, epochs=2, patience=2, lr=0.02, gnn_topk=4)
    with_residual = train_cdr(partner, "aa_bb", config=CDRConfig(**fast), targets=("bb",))["metrics"]["bb"]
    without = train_cdr(partner, "aa_bb", config=CDRConfig(count_residual=False, **fast), targets=("bb",))["metrics"]["bb"]
    assert with_residual["HR@10"] > 0.5 and without["HR@10"] < 0.2, (with_residual, without)
    assert with_residual["NDCG@10"] > without["NDCG@10"] + 0.2


def test_single_domain_never_gets_the_residual(partner):
    data = load_pair(partner, "aa_bb")
    assert "residual" not in build_model(CDRConfig(model="single-domain", dim=8), data)._modules
    net = build_model(CDRConfig(model="unicdr", dim=8), data)
    assert isinstance(net.residual.bias, torch.nn.Parameter) and {"residual.bias", "residual.coef"} <= set(net.state_dict())
    assert torch.allclose(net.residual.weight(1, torch.tensor([0]), torch.tensor([[0, 1]])), torch.tensor(4.0))  # starts at 4


def test_users_not_shared_by_the_domains_carry_no_cross_domain_signal(tmp_path):
    from mmrec.crossdomain.data import CDRData, Domain, domain_histories, other_histories
    from mmrec.crossdomain.files import common_users

    def pair(shared):
        return CDRData(domains=(Domain("t", "t", 3, TGT), Domain("s", "s", 3, SRC)), n_users=6, shared_users=shared)

    # users 0, 1 shared: user 2's source row (item 1) is another person's, its target item 1 no co-count
    count = fit_baseline("count", pair(2), 0)
    assert np.array_equal(count.g.toarray(), [[2, 1, 0], [1, 0, 0], [0, 0, 0]])
    assert np.array_equal(fit_baseline("count", pair(None), 0).g.toarray(), [[2, 1, 0], [1, 1, 0], [0, 0, 0]])
    hist = domain_histories(pair(2), 2)
    other = other_histories(pair(2), hist)
    assert (other[1][2:] == -1).all() and torch.equal(other[1][:2], hist[1][:2]) and (hist[1][2] >= 0).any()
    # the pair folders' data-info files name the shared users; the smaller of two counts is kept
    for name, n in (("a_b", 9928), ("b_a", 9828)):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}_data_info.txt").write_text(f"common user num {n}\nwrite data finished!\n")
    assert common_users((tmp_path / "a_b", tmp_path / "b_a")) == 9828
    assert common_users((tmp_path, tmp_path)) is None
