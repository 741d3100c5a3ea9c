"""SYNTHETIC sequences with a planted code-level rule: the generative retriever (TIGER encoder-decoder and
OneRec-V2 lazy decoder) learns it, its constrained beams are real items scored by their exact
log-likelihood, and a saved run gives the same beams."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file, save_file
from seq_data import write_lcrec

from mmrec.cli import main
from mmrec.config import build_config
from mmrec.errors import UsageError
from mmrec.pipelines.retrieve import evaluate_run, load_run, train
from mmrec.pipelines.seq_import import import_sequences
from mmrec.quantization.files import save_codes
from mmrec.retrieval.data import ITEM_KEY, Sequences, read_sequences
from mmrec.retrieval.generative import GenerativeConfig, GenerativeRetriever
from mmrec.retrieval.generative_beam import CodeTrie, beam_search, evaluate_generative

ARCHS = ["encoder-decoder", "lazy-decoder"]
SIZES = (4, 4, 4)
TINY = dict(dim=32, heads=2, encoder_layers=1, decoder_layers=1, dropout=0.0, max_len=5, beam=20)


def rule(codes: np.ndarray) -> np.ndarray:
    """The planted rule: the next item's first code = the last item's second code (a cross-level copy;
    a rule like ``(c1 + c2) mod 4`` is parity-like, no code alone tells anything, and small models do
    not find it in a few epochs)."""
    return codes[..., 1]


def planted_codes(users: int = 500, length: int = 8, seed: int = 0):
    """SYNTHETIC: 64 items, one per code tuple of sizes (4, 4, 4) (tuples assigned to items in random
    order); each next item has the first code ``rule(last item)`` and uniformly random other codes."""
    rng = np.random.default_rng(seed)
    tuples = np.stack(np.meshgrid(*[np.arange(k) for k in SIZES], indexing="ij"), -1).reshape(-1, 3)
    codes = tuples[rng.permutation(len(tuples))]  # item i -> codes[i]
    item_of = {tuple(c): i for i, c in enumerate(codes)}
    sequences = []
    for _ in range(users):
        seq = [int(rng.integers(len(codes)))]
        for _ in range(length - 1):
            seq.append(item_of[(int(rule(codes[seq[-1]])), int(rng.integers(4)), int(rng.integers(4)))])
        sequences.append(seq)
    return sequences, codes


def write_planted(root):
    """The planted sequences imported into ``root / "data"``; their codes keyed by item index in ``root / "codes.parquet"``."""
    sequences, codes = planted_codes()
    import_sequences(write_lcrec(root / "src", "G", sequences), "G", root / "data")
    raw = np.array(pq.read_table(root / "data" / "items.parquet", columns=["raw_item"]).column(0).to_pylist(), dtype=int)
    save_codes(root / "codes.parquet", [ITEM_KEY.format(i) for i in range(len(raw))], codes[raw], info={"method": "SYNTHETIC"})


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("generative")
    write_planted(root)
    reports = {arch: train(root / "data", root / arch, {"model": "generative", "codes": str(root / "codes.parquet"),
                                                         "batch_size": 128, "lr": 3e-3, "generative": {**TINY, "arch": arch},
                                                         "loop": {"epochs": 5, "progress": False}})
               for arch in ARCHS}
    return root, reports


@pytest.mark.parametrize("arch", ARCHS)
def test_learns_the_planted_code_rule_far_above_chance(planted_run, arch):
    root, reports = planted_run
    report = reports[arch]
    chance = 10 / 64
    assert report["validation"]["recall@10"] > 2.5 * chance  # knowing c1 alone gives 10 / 16 = 0.625
    assert report["train"]["arch"] == arch and report["train"]["code_tuples"] == 64
    history = report["train"]["history"]  # validation NDCG@10 after every epoch; the best epoch is kept
    assert report["validation"]["ndcg@10"] == max(h["metric"] for h in history) == history[report["train"]["best_epoch"] - 1]["metric"]
    model, config = load_run(root / arch)
    seqs, _ = read_sequences(root / "data")
    history, targets = seqs.split_last()
    users = np.arange(len(history))
    tuples, _ = beam_search(model, CodeTrie.of(model), history.padded(users, config["model"]["max_len"]))
    last = model.item_codes.numpy()[history.items[history.offsets[1:] - 1]]
    top = model.item_codes.numpy()[CodeTrie.of(model).slot_items[tuples[:, 0].numpy()]]
    assert (top[:, 0] == rule(last)).mean() > 0.9  # the best beam's first code follows the rule


@pytest.mark.parametrize("arch", ARCHS)
def test_saved_run_gives_the_same_beams_and_metrics(planted_run, arch, tmp_path):
    root, reports = planted_run
    model, config = load_run(root / arch)
    evaluated = evaluate_run(root / arch)
    for key in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
        assert evaluated[key] == pytest.approx(reports[arch]["validation"][key])
    (tmp_path / "test.tsv").write_text("u0\t5\nu1\t9\nnobody\t1\n")  # raw ids, predicted from the whole sequences
    tested = evaluate_run(root / arch, test=tmp_path / "test.tsv")
    assert tested["split"] == "test" and tested["users"] == 2 and tested["skipped"]["unknown_user"] == 1
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "again.safetensors"))
    again = GenerativeRetriever(build_config(GenerativeConfig, config["model"]))
    again.load_state_dict(load_file(str(tmp_path / "again.safetensors")))
    again.eval()
    history = np.array([[-1, 3, 7, 9], [1, 2, 3, 4], [-1, -1, -1, 60]])
    a, b = beam_search(model, CodeTrie.of(model), history), beam_search(again, CodeTrie.of(again), history)
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1])


def _sparse_codes(seed: int = 1):
    """SYNTHETIC: 40 items over 30 distinct tuples of a (4, 4, 4) space: 10 items are twins of others."""
    rng = np.random.default_rng(seed)
    space = np.stack(np.meshgrid(*[np.arange(k) for k in SIZES], indexing="ij"), -1).reshape(-1, 3)
    distinct = space[rng.choice(len(space), 30, replace=False)]
    return np.concatenate([distinct, distinct[:10]])  # item 30 + j shares item j's tuple


@pytest.mark.parametrize("form", [{"arch": "encoder-decoder"}, {"arch": "lazy-decoder"},
                                  {"arch": "lazy-decoder", "decoder_layers": 2, "kv_groups": 2}])
def test_constrained_beams_are_items_scored_by_their_exact_log_likelihood(form):
    torch.manual_seed(0)
    codes = _sparse_codes()
    model = GenerativeRetriever(GenerativeConfig(n_items=40, code_sizes=SIZES, **{**TINY, **form})).eval()
    model.set_codes(codes)
    trie = CodeTrie.of(model)
    assert len(trie) == 30 and list(trie.items_of(trie.item_tuple[3])) == [3, 33]
    history = np.random.default_rng(0).integers(-1, 40, (16, 5))
    tuples, scores = beam_search(model, trie, history)  # beam 20 of 30 tuples
    assert (tuples >= 0).all() and all(len(set(row.tolist())) == 20 for row in tuples)  # distinct real tuples
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    exact = model.log_likelihood(history, torch.as_tensor(trie.tuples[tuples.numpy()]))  # teacher-forced
    assert torch.allclose(scores, exact, atol=1e-5)
    every = model.log_likelihood(history, torch.as_tensor(trie.tuples)[None].expand(16, -1, -1))  # (16, 30)
    full, full_scores = beam_search(model, trie, history, beam=len(trie))
    assert torch.equal(full, every.argsort(1, descending=True)) and torch.allclose(full_scores, every.sort(1, descending=True).values, atol=1e-5)
    wide, _ = beam_search(model, trie, history, beam=64)  # more beams than tuples: the tail is empty
    assert torch.equal(wide[:, :30], full) and (wide[:, 30:] == -1).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_matches_the_exact_ranking_of_all_tuples_on_a_trained_model(planted_run, arch):
    root, _ = planted_run
    model, _ = load_run(root / arch)
    trie = CodeTrie.of(model)
    history = np.random.default_rng(1).integers(0, 64, (64, 5))
    tuples, _ = beam_search(model, trie, history, beam=20)
    every = model.log_likelihood(history, torch.as_tensor(trie.tuples)[None].expand(64, -1, -1))
    best = every.argsort(1, descending=True)[:, :10]
    overlap = np.mean([len(set(b.tolist()) & set(t[:10].tolist())) / 10 for b, t in zip(best, tuples)])
    assert overlap > 0.95


def test_items_sharing_a_tuple_are_one_slot():
    torch.manual_seed(0)
    codes = _sparse_codes()
    model = GenerativeRetriever(GenerativeConfig(n_items=40, code_sizes=SIZES, **TINY)).eval()
    model.set_codes(codes)
    trie = CodeTrie.of(model)
    seqs = Sequences.from_lists([[1, 2, 4, 3], [1, 2, 4, 33], [4, 4, 0, 12]], 40)
    history, targets = seqs.split_last()
    report = evaluate_generative(model, history, targets, max_len=5, return_ranks=True, trie=trie)
    tuples, _ = beam_search(model, trie, history.padded(np.arange(3), 5))
    position = [int(np.flatnonzero(row == trie.item_tuple[t])[0]) if trie.item_tuple[t] in row else 20
                for row, t in zip(tuples.numpy(), targets)]
    assert list(report["ranks"]) == position
    assert report["ranks"][0] == report["ranks"][1]  # item 33 is item 3's twin: the same slot, the same rank
    ranked = trie.ranked_items(tuples.numpy())[0]
    assert len(ranked) == 20 + sum(trie.item_tuple[i] in tuples[0].numpy() for i in range(30, 40))  # twins listed together
    with pytest.raises(UsageError, match="beam 5"):
        evaluate_generative(model, history, targets, max_len=5, beam=5)


def test_lazy_decoder_moves_parameters_from_the_encoder_to_the_decoder():
    sizes = dict(n_items=40, code_sizes=SIZES, dim=32, heads=2, dropout=0.0)
    encdec = GenerativeRetriever(GenerativeConfig(arch="encoder-decoder", encoder_layers=2, decoder_layers=2, **sizes))
    lazy = GenerativeRetriever(GenerativeConfig(arch="lazy-decoder", decoder_layers=4, kv_groups=1, **sizes))  # 2 + 2 layers' worth
    for model in (encdec, lazy):
        counts = model.parameter_counts()
        assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert lazy.parameter_counts()["context"] < encdec.parameter_counts()["context"] / 5  # no encoder blocks
    assert lazy.parameter_counts()["decoder"] > encdec.parameter_counts()["decoder"]
    assert abs(lazy.parameter_counts()["total"] - encdec.parameter_counts()["total"]) < 0.1 * encdec.parameter_counts()["total"]
    grouped = GenerativeRetriever(GenerativeConfig(arch="lazy-decoder", decoder_layers=4, kv_groups=2, **sizes))
    assert grouped.parameter_counts()["context"] - lazy.parameter_counts()["context"] == 32 * 64 + 64 + 2 * 32  # one more K/V pair
    with pytest.raises(UsageError, match="kv_groups"):
        GenerativeConfig(arch="lazy-decoder", decoder_layers=2, kv_groups=3)


def test_cli_trains_and_evaluates_a_generative_run(planted_run, tmp_path, capsys):
    root, _ = planted_run
    out = tmp_path / "run"
    assert main(["retrieve", "train", "--data", str(root / "data"), "--model", "generative", "--codes", str(root / "codes.parquet"),
                 "--out", str(out), "--seed", "1", "--epochs", "1", "--gen-arch", "lazy-decoder", "--gen-dim", "32",
                 "--gen-heads", "2", "--gen-decoder-layers", "1", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["model"] == "generative" and trained["train"]["arch"] == "lazy-decoder"
    assert main(["retrieve", "evaluate", "--run", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert {"recall@5", "ndcg@5", "recall@10", "ndcg@10", "users", "items", "tail", "beam_users_per_s"} <= set(evaluated)
    assert evaluated["ndcg@10"] == pytest.approx(trained["validation"]["ndcg@10"])
    assert main(["retrieve", "train", "--data", str(root / "data"), "--model", "generative", "--out", str(tmp_path / "x")]) == 2
