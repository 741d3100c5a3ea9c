import pytest
import torch

from mmrec.errors import UsageError
from mmrec.layers import CodeEmbedding, target_attention
from mmrec.quantization.features import CodeCrossFeatures, prefix_match


def test_code_embedding_sum_concat_and_padding():
    torch.manual_seed(0)
    emb = CodeEmbedding([4, 8, 8], 6, mode="sum")
    codes = torch.tensor([[1, 2, 3], [1, 2, -1]])
    out = emb(codes)
    table = emb.table.weight
    assert out.shape == (2, 6)
    assert torch.allclose(out[0], table[1] + table[4 + 2] + table[12 + 3])
    assert torch.allclose(out[1], table[1] + table[4 + 2])  # -1 is padding, embeds to zero
    cat = CodeEmbedding([4, 8, 8], 6, mode="concat")
    assert cat(codes.unsqueeze(0)).shape == (1, 2, 18) and cat.out_dim == 18
    out.sum().backward()
    assert emb.table.weight.grad[[1, 6, 15]].abs().sum() > 0 and emb.table.weight.grad[emb.padding_idx].abs().sum() == 0
    with pytest.raises(UsageError, match="codes have 2 levels, expected 3"):
        emb(torch.zeros(2, 2, dtype=torch.long))


def test_prefix_match_counts_leading_levels():
    cand = torch.tensor([[1, 2, 3]])
    hist = torch.tensor([[[1, 2, 3], [1, 2, 0], [1, 0, 3], [0, 2, 3]]])
    assert prefix_match(cand, hist).tolist() == [[3, 2, 1, 0]]


def test_target_attention_masks_and_empty_rows():
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    keys = torch.tensor([[[10.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    values = torch.tensor([[[1.0, 1.0], [5.0, 5.0]], [[1.0, 1.0], [1.0, 1.0]]])
    mask = torch.tensor([[False, True], [False, False]])
    out = target_attention(q, keys, values, mask)
    assert torch.allclose(out[0], torch.tensor([5.0, 5.0]))  # only the unmasked item counts
    assert torch.equal(out[1], torch.zeros(2))


def test_cross_features_plug_into_a_ranker_and_learn():
    torch.manual_seed(0)
    feats = CodeCrossFeatures([8, 8], 4, min_prefix=1)
    # label = the candidate shares its first code with some history item (a prefix-match signal)
    cand = torch.randint(0, 8, (256, 2))
    hist = torch.randint(0, 8, (256, 5, 2))
    mask = torch.ones(256, 5, dtype=torch.bool)
    mask[:, 3:] = False
    label = (prefix_match(cand, hist).masked_fill(~mask, 0) >= 1).any(1).float()
    out = feats(cand, hist, mask)
    assert out.shape == (256, feats.out_dim) and feats.out_dim == 3 * 4 + 2
    ranker = torch.nn.Sequential(feats_wrapper := _Wrap(feats), torch.nn.Linear(feats.out_dim, 1))
    opt = torch.optim.Adam(ranker.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(ranker((cand, hist, mask)).squeeze(-1), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert feats_wrapper.inner.embedding.table.weight.grad is not None  # code tables learn end to end


class _Wrap(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, batch):
        return self.inner(*batch)


def test_bad_feature_configs():
    with pytest.raises(UsageError, match="mode must be"):
        CodeEmbedding([4], 2, mode="max")
    with pytest.raises(UsageError, match="min_prefix must be in"):
        CodeCrossFeatures([4, 4], 2, min_prefix=3)


def test_target_attention_takes_any_leading_dims_and_is_the_rankers_dot_scorer():
    from mmrec.rankers import TargetAttention

    torch.manual_seed(0)
    q, keys = torch.randn(2, 3, 4), torch.randn(2, 3, 5, 4)
    mask = torch.rand(2, 3, 5) > 0.3
    out = target_attention(q, keys, keys, mask)  # (2, 3, 4)
    flat = target_attention(q.reshape(6, 4), keys.reshape(6, 5, 4), keys.reshape(6, 5, 4), mask.reshape(6, 5))
    assert out.shape == (2, 3, 4) and torch.allclose(out.reshape(6, 4), flat)
    assert torch.allclose(TargetAttention(4, scorer="dot")(q, keys, mask), out)
