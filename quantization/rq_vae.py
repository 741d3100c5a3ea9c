"""RQ-VAE semantic IDs (Lee et al. 2022, "Autoregressive Image Generation using Residual
Quantization", eq. 4-6; used for item IDs by TIGER, Rajput et al. 2023, sec. 3.1).

An MLP encoder maps ``x`` to ``z``; :class:`ResidualQuantizer` quantizes ``z`` with ``L`` codebooks
on successive residuals (``r_1 = z``, ``e_l = C_l[argmin_k ||r_l - C_l[k]||]``, ``r_{l+1} = r_l - e_l``,
``z_q = sum_l e_l``, straight-through gradient); an MLP decoder maps ``z_q`` back to ``x_hat``.
Loss = ``||x - x_hat||^2 + sum_l (||sg[r_l] - e_l||^2 + beta ||r_l - sg[e_l]||^2)`` (VQ-VAE's codebook
and commitment terms, beta = 0.25).

Against codebook collapse, the failure GRID and RQ-VAE-Recommender report: [I] codebooks start
from k-means on the initial encoder's residuals, level by level (TIGER does this too); every
``restart_every`` steps a code that no vector of the last window used is moved onto a random
residual of the current batch at its level (dead code restart, as in Jukebox / vector-quantize-
pytorch's ``threshold_ema_dead_code``). Training runs through the shared loop,
:func:`mmrec.training.fit`; the restarts are its ``after_step``. [I] Inputs are used as given; latent width, depth, steps and
batch size are config fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mmrec.device import resolve_device
from mmrec.errors import UsageError
from mmrec.quantization.base import CodeQuantizer
from mmrec.quantization.kmeans import kmeans
from mmrec.training import LoopConfig, fit, shuffled_batches


class ResidualQuantizer(nn.Module):
    """``L`` codebooks of ``K`` vectors in ``dim``; ``forward(z) -> (quantized, codes, loss)``."""

    def __init__(self, *, levels: int, codebook_size: int, dim: int, beta: float = 0.25) -> None:
        super().__init__()
        self.codebooks = nn.Parameter(torch.randn(levels, codebook_size, dim) / dim**0.5)  # (L, K, D)
        self.beta = beta
        self.last_residuals: list[torch.Tensor] = []  # per level, filled in training for restarts

    def nearest(self, residual: torch.Tensor, level: int) -> torch.Tensor:
        with torch.autocast(residual.device.type, enabled=False):  # float32 distances under AMP too
            residual, book = residual.float(), self.codebooks[level].float()  # (B, D), (K, D)
            dists = residual.pow(2).sum(1, keepdim=True) - 2 * residual @ book.T + book.pow(2).sum(1)  # (B, K)
        return dists.argmin(dim=1)  # (B,)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        residual, quantized = z, torch.zeros_like(z)  # (B, D)
        codes, loss = [], z.new_zeros(())
        self.last_residuals = []
        for level in range(len(self.codebooks)):
            if self.training:
                self.last_residuals.append(residual.detach())
            idx = self.nearest(residual.detach(), level)
            e = self.codebooks[level][idx]  # (B, D)
            loss = loss + _sq(e - residual.detach()) + self.beta * _sq(residual - e.detach())
            quantized = quantized + e
            residual = residual - e.detach()
            codes.append(idx)
        quantized = z + (quantized - z).detach()  # straight-through to the encoder
        return quantized, torch.stack(codes, dim=1), loss  # (B, D), (B, L), ()

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` codes -> ``(B, D)`` sum of their codebook vectors."""
        return sum(self.codebooks[level][codes[:, level]] for level in range(codes.shape[1]))


def _sq(diff: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm per row, averaged over the batch (the ``||.||^2`` of the loss)."""
    return diff.pow(2).sum(-1).mean()


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    """Encoder MLP -> :class:`ResidualQuantizer` -> decoder MLP; ``forward(x) -> (x_hat, codes, loss)``."""

    def __init__(self, *, dim: int, hidden: tuple[int, ...], latent_dim: int, levels: int, codebook_size: int, beta: float) -> None:
        super().__init__()
        self.encoder = _mlp([dim, *hidden, latent_dim])
        self.quantizer = ResidualQuantizer(levels=levels, codebook_size=codebook_size, dim=latent_dim, beta=beta)
        self.decoder = _mlp([latent_dim, *reversed(hidden), dim])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encoder(x)  # (B, latent)
        z_q, codes, quant_loss = self.quantizer(z)
        x_hat = self.decoder(z_q)  # (B, dim)
        return x_hat, codes, _sq(x_hat - x) + quant_loss


@dataclass
class RQVAEConfig:
    levels: int = 3
    codebook_size: int = 256
    latent_dim: int = 32
    hidden: tuple[int, ...] = (256, 128)
    beta: float = 0.25
    epochs: int = 50
    batch_size: int = 1024
    lr: float = 1e-3
    kmeans_init: bool = True
    restart_every: int = 50  # steps; 0 = no dead code restarts
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        if min(self.levels, self.latent_dim, self.epochs, self.batch_size) < 1 or self.codebook_size < 2:
            raise UsageError(f"RQ-VAE sizes must be positive (codebook_size >= 2); got {self}")
        if self.restart_every < 0:
            raise UsageError(f"restart_every must be >= 0, got {self.restart_every}")


class RQVAEQuantizer(CodeQuantizer):
    """Trains an :class:`RQVAE` on the vectors; codes are its quantizer's indices."""

    method = "rq-vae"
    config_class = RQVAEConfig
    model: RQVAE | None = None
    history: Mapping[str, Any] = MappingProxyType({})  # read-only until fit sets the instance's own

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.config.codebook_size] * self.config.levels

    def _build(self, dim: int) -> RQVAE:
        c = self.config
        return RQVAE(dim=dim, hidden=c.hidden, latent_dim=c.latent_dim, levels=c.levels, codebook_size=c.codebook_size, beta=c.beta)

    @torch.no_grad()
    def _kmeans_init(self, x: torch.Tensor) -> None:
        residual = self.model.encoder(x).float().cpu().numpy()  # (n, latent)
        for level in range(self.config.levels):
            centroids = kmeans(residual, self.config.codebook_size, niter=20, seed=self.config.seed + level)
            book = torch.from_numpy(centroids).to(x.device)
            self.model.quantizer.codebooks[level].copy_(book)
            idx = self.model.quantizer.nearest(torch.from_numpy(residual).to(x.device), level).cpu().numpy()
            residual = residual - centroids[idx]

    @torch.no_grad()
    def _restart_dead(self, usage: torch.Tensor, generator: torch.Generator) -> int:
        """Move codes unused in the window onto random residuals of the last batch; returns how many."""
        quantizer, moved = self.model.quantizer, 0
        for level, residuals in enumerate(quantizer.last_residuals):
            dead = torch.nonzero(usage[level] == 0).flatten()
            if len(dead):
                pick = torch.randint(len(residuals), (len(dead),), generator=generator).to(residuals.device)
                quantizer.codebooks[level, dead] = residuals[pick]
                moved += len(dead)
        usage.zero_()
        if dist.is_available() and dist.is_initialized():  # under DDP every rank keeps rank 0's books
            dist.broadcast(quantizer.codebooks.data, src=0)
        return moved

    def fit_transform(self, x: np.ndarray, *, progress: bool = False) -> np.ndarray:
        """Train the RQ-VAE on ``(n, d)`` vectors through :func:`mmrec.training.fit` (Adam, full
        batches only); dead-code restarts run in its ``after_step``. Returns the ``(n, L)`` codes."""
        c = self.config
        x = self._check_fit_input(x, c.codebook_size)
        torch.manual_seed(c.seed)
        device = resolve_device(c.device, what="rq-vae device")
        self.dim = x.shape[1]
        self.model = self._build(self.dim).to(device)
        data = torch.from_numpy(x).to(device)
        if c.kmeans_init:
            self._kmeans_init(data)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=c.lr)
        generator = torch.Generator().manual_seed(c.seed)
        usage = torch.zeros(c.levels, c.codebook_size, device=device)  # code use since the last restart
        last: dict[str, torch.Tensor] = {}
        restarts = 0

        def step(net: nn.Module, rows: torch.Tensor) -> torch.Tensor:
            _, codes, loss = net(data[rows])
            last["codes"] = codes  # (B, L)
            return loss

        def after_step(n_steps: int, rows: torch.Tensor) -> None:
            nonlocal restarts
            codes = last["codes"].T  # (L, B)
            usage.scatter_add_(1, codes, torch.ones_like(codes, dtype=usage.dtype))
            if c.restart_every and n_steps % c.restart_every == 0:
                restarts += self._restart_dead(usage, generator)

        batches = shuffled_batches(len(x), min(c.batch_size, len(x)), seed=c.seed, drop_last=True, device=device)
        result = fit(self.model, optimizer, batches, step, after_step=after_step, size=len,
                     config=LoopConfig(epochs=c.epochs, progress=progress, desc=self.method))
        self.history = {"epoch_loss": [entry["loss"] for entry in result.history], "dead_code_restarts": restarts,
                        "steps": result.steps}
        return self._transform(x)

    @torch.no_grad()
    def _transform(self, x: np.ndarray) -> np.ndarray:
        device = next(self.model.parameters()).device
        self.model.eval()
        chunks = []
        for start in range(0, len(x), 65536):
            z = self.model.encoder(torch.from_numpy(x[start : start + 65536]).to(device))
            chunks.append(self.model.quantizer(z)[1].cpu())
        return torch.cat(chunks).numpy().astype(np.int64)

    @torch.no_grad()
    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        codes = torch.from_numpy(self.check_codes(codes)).to(next(self.model.parameters()).device)
        return self.model.decoder(self.model.quantizer.lookup(codes)).float().cpu().numpy()

    def _state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}

    def _load_state(self, tensors: dict[str, np.ndarray]) -> None:
        self.model = self._build(self.dim).to(resolve_device(self.config.device, what="rq-vae device"))
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
        self.model.eval()

    def describe(self) -> dict[str, Any]:
        return {"config": asdict(self.config), **self.history}
