"""Gradient reversal and the adversarial batch discriminator (MODEL.md §4)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mmaavi import _constants as K
from mmaavi.graph import graph_tensors
from mmaavi.module import LossWeights, MMAAVIModule
from mmaavi.nn import BatchDiscriminator, reverse_gradient

torch.set_num_threads(1)


@pytest.mark.parametrize("factor", [20.0, 1.0, 0.5])
def test_reverse_gradient_is_identity_forward_and_scales_gradient(factor):
    x = torch.randn(4, 3, requires_grad=True)
    y = reverse_gradient(x, factor)
    assert torch.equal(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((4, 3), -factor))


def test_reverse_gradient_chain_rule():
    x = torch.randn(5, requires_grad=True)
    (reverse_gradient(x, 20.0) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, -20.0 * 2 * x.detach())


def test_discriminator_is_a_scalar_smoothed_cross_entropy_with_reversed_gradient():
    torch.manual_seed(0)
    disc = BatchDiscriminator(n_latent=4, n_classes=3, reversal=20.0, label_smoothing=0.1)
    disc.eval()  # no dropout: deterministic
    z = torch.randn(10, 4, requires_grad=True)
    target = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])

    loss = disc(z, target)
    assert loss.shape == ()
    z_ref = z.detach().clone().requires_grad_(True)
    expected = F.cross_entropy(disc.net(z_ref), target, label_smoothing=0.1)
    torch.testing.assert_close(loss, expected)
    assert loss.item() > 0

    loss.backward()
    expected.backward()
    torch.testing.assert_close(z.grad, -20.0 * z_ref.grad)
    # the discriminator's own parameters get the ordinary (not reversed) gradient
    assert all(p.grad is not None for p in disc.parameters())


def tiny_module(n_adversarial: int) -> MMAAVIModule:
    torch.manual_seed(0)
    names = {"rna": [f"g{i}" for i in range(8)], "adt": [f"p{i}" for i in range(8)]}
    edge_index, edge_weight, edge_sign = graph_tensors(
        None, {m: pd.Index(v) for m, v in names.items()}
    )
    return MMAAVIModule(
        n_inputs={"rna": 8, "adt": 8},
        n_features={"rna": 8, "adt": 8},
        n_batches=2,
        n_adversarial=n_adversarial,
        n_components=3,
        likelihoods={"rna": "nb", "adt": "nb"},
        edge_index=edge_index,
        edge_weight=edge_weight,
        edge_sign=edge_sign,
        n_latent=4,
        n_latent_u=3,
        encoder_hidden=(16, 8),
    )


def tiny_batch(n: int = 12) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    obs_mask = torch.ones(n, 2, dtype=torch.bool)
    obs_mask[: n // 3, 1] = False
    obs_mask[n // 3 : 2 * n // 3, 0] = False
    batch = {K.OBS_MASK: obs_mask}
    for j, m in enumerate(("rna", "adt")):
        x = torch.poisson(torch.full((n, 8), 3.0), generator=gen)
        x[~obs_mask[:, j]] = 0
        batch[K.mod_key(K.X, m)] = x
        batch[K.mod_key(K.ENC, m)] = torch.log1p(x)
    b = torch.tensor([0, 1] * (n // 2))
    batch[K.BATCH] = b
    batch[K.ADV] = b
    batch[K.LABEL] = torch.full((n,), K.UNLABELED)
    return batch


def test_single_adversarial_class_disables_discriminator():
    module = tiny_module(n_adversarial=1)
    assert module.discriminator is None
    out = module.loss(tiny_batch(), LossWeights())
    assert out.terms["disc"].item() == 0.0
    assert torch.equal(out.total, out.monitor)


def test_two_adversarial_classes_enable_discriminator():
    module = tiny_module(n_adversarial=2)
    assert isinstance(module.discriminator, BatchDiscriminator)
    out = module.loss(tiny_batch(), LossWeights(disc=2.0))
    assert out.terms["disc"].item() > 0.0
    torch.testing.assert_close(out.total, out.monitor + 2.0 * out.terms["disc"])
