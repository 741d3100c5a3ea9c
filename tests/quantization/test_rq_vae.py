import torch
from quant_data import blobs

from mmrec.quantization.report import code_report
from mmrec.quantization.rq_vae import RQVAE, ResidualQuantizer, RQVAEQuantizer


def test_quantizer_module_returns_quantized_codes_loss_with_straight_through():
    torch.manual_seed(0)
    rq = ResidualQuantizer(levels=3, codebook_size=16, dim=8)
    z = torch.randn(32, 8, requires_grad=True)
    quantized, codes, loss = rq(z)
    assert quantized.shape == (32, 8) and codes.shape == (32, 3) and loss.ndim == 0
    assert torch.allclose(quantized, rq.lookup(codes), atol=1e-5)  # value: the sum of chosen codewords
    quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # gradient passes straight through
    loss.backward()
    assert rq.codebooks.grad is not None and rq.codebooks.grad.abs().sum() > 0


def test_rqvae_forward_shapes():
    model = RQVAE(dim=20, hidden=(16,), latent_dim=4, levels=2, codebook_size=8, beta=0.25)
    x_hat, codes, loss = model(torch.randn(10, 20))
    assert x_hat.shape == (10, 20) and codes.shape == (10, 2) and loss.ndim == 0


def test_kmeans_init_and_dead_code_restarts_prevent_collapse():
    x, _ = blobs(n_per=60, k=8, d=24, scale=3.0)
    kw = dict(levels=2, codebook_size=16, epochs=15, batch_size=64, latent_dim=8, hidden=(64,))
    used = {}
    for name, extra in {"plain": dict(kmeans_init=False, restart_every=0), "guarded": dict(restart_every=10)}.items():
        q = RQVAEQuantizer(**kw, **extra)
        codes = q.fit_transform(x)
        report = code_report(codes, q.codebook_sizes)
        used[name] = (sum(level["used"] for level in report["levels"]), report["unique_id_pct"])
    assert used["guarded"][0] > used["plain"][0] + 8
    assert used["guarded"][1] > used["plain"][1]
