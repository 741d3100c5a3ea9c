"""Training samples of the sequential retrievers: every position of each user's training part is a
target, batched by similar length (the sampler of ``mmrec retrieve train``)."""

from __future__ import annotations

import numpy as np
import torch

from mmrec.retrieval.data import Sequences
from mmrec.training import rank_shares, shuffled_batches


class TrainingSamples:
    """Training batches over the training part: each user's last ``max_len + 1`` training items, read
    once, with a target at every position (item ``t + 1`` after the prefix ending at ``t``)."""

    def __init__(self, seqs: Sequences, max_len: int) -> None:
        self.seqs, self.max_len = seqs, max_len
        self.users = np.flatnonzero(seqs.lengths >= 2)
        self.ends = seqs.offsets[self.users + 1] - 1
        first = np.maximum(seqs.offsets[self.users] + 1, self.ends + 1 - max_len)
        self.targets_per_user = self.ends + 1 - first  # (S,) training samples of each user
        targets = np.concatenate([seqs.items[a : b + 1] for a, b in zip(first, self.ends)] or [np.zeros(0, np.int64)])
        counts = np.bincount(targets, minlength=seqs.n_items) + 1.0  # add-one: items never a target keep a finite log q
        self.log_p = torch.as_tensor(np.log(counts / counts.sum()), dtype=torch.float32)

    def __len__(self) -> int:
        return int(self.targets_per_user.sum())

    def epochs(self, batch_size: int, seed: int):
        """``batches(epoch)`` for :func:`fit`: users shuffled, sorted by length within chunks of about 32
        batches (padding to the longest history of a random batch wastes most of the compute), cut into
        batches of about ``batch_size`` targets, the batches of a chunk in random order. Under torchrun each
        rank trains on its share of every such batch (:func:`mmrec.training.rank_shares`: every other user)."""
        per_chunk = max(1, int(32 * batch_size / max(self.targets_per_user.mean(), 1)))
        chunks = shuffled_batches(len(self.users), per_chunk, seed=seed, share=False)

        def batches(epoch: int):
            g = np.random.default_rng([seed, epoch])
            for chunk in chunks(epoch):
                chunk = chunk.numpy()
                chunk = chunk[np.argsort(self.targets_per_user[chunk], kind="stable")]
                cut = np.searchsorted(np.cumsum(self.targets_per_user[chunk]), np.arange(batch_size, len(self) + batch_size, batch_size))
                parts = [p for p in np.split(chunk, np.unique(np.minimum(cut + 1, len(chunk)))) if len(p)]
                for part in rank_shares(parts[i] for i in g.permutation(len(parts))):
                    yield self.batch(torch.as_tensor(part))

        return batches

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = idx.cpu().numpy()
        users, ends = self.users[idx], self.ends[idx]
        starts = self.seqs.offsets[users]
        length = int(min(self.max_len, (ends - starts).max()))
        pos = ends[:, None] - length + np.arange(length)  # (B, L) positions before the end
        valid = pos >= starts[:, None]
        hist = np.where(valid, self.seqs.items[np.clip(pos, 0, None)], -1)
        targets = np.where(valid, self.seqs.items[np.clip(pos + 1, 0, None)], -1)  # (B, L)
        return {"history": torch.as_tensor(hist), "targets": torch.as_tensor(targets)}
