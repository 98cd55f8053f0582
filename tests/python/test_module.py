"""MMAAVIModule on hand-made minibatches: loss terms, masking and semi-supervision (MODEL.md §3-8)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mmaavi import _constants as K
from mmaavi.graph import graph_tensors
from mmaavi.module import LOSS_TERMS, LossWeights, MMAAVIModule

torch.set_num_threads(1)

MODS = ("rna", "adt")
N_FEATURES = 8
N_CELLS = 12


def make_module(likelihoods=None, n_components: int = 3) -> MMAAVIModule:
    torch.manual_seed(0)
    var_names = {m: pd.Index([f"{m}{i}" for i in range(N_FEATURES)]) for m in MODS}
    edge_index, edge_weight, edge_sign = graph_tensors(None, var_names)
    return MMAAVIModule(
        n_inputs=dict.fromkeys(MODS, N_FEATURES),
        n_features=dict.fromkeys(MODS, N_FEATURES),
        n_batches=2,
        n_adversarial=2,
        n_components=n_components,
        likelihoods=likelihoods or dict.fromkeys(MODS, "nb"),
        edge_index=edge_index,
        edge_weight=edge_weight,
        edge_sign=edge_sign,
        n_latent=4,
        n_latent_u=3,
        encoder_hidden=(16, 8),
    )


def make_batch() -> dict[str, torch.Tensor]:
    """12 cells: 0-3 both modalities, 4-7 rna only, 8-11 adt only; two batches."""
    gen = torch.Generator().manual_seed(1)
    obs_mask = torch.ones(N_CELLS, 2, dtype=torch.bool)
    obs_mask[4:8, 1] = False
    obs_mask[8:, 0] = False
    batch = {K.OBS_MASK: obs_mask}
    for j, m in enumerate(MODS):
        x = torch.poisson(torch.full((N_CELLS, N_FEATURES), 4.0), generator=gen)
        x[~obs_mask[:, j]] = 0
        batch[K.mod_key(K.X, m)] = x
        batch[K.mod_key(K.ENC, m)] = torch.log1p(x) - 1.0
    b = torch.tensor([0, 1] * (N_CELLS // 2))
    batch[K.BATCH] = b
    batch[K.ADV] = b.clone()
    batch[K.LABEL] = torch.full((N_CELLS,), K.UNLABELED)
    return batch


def seeded_loss(module, batch, weights=None, seed=123):
    torch.manual_seed(seed)
    return module.loss(batch, weights or LossWeights())


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "bernoulli", "normal"])
def test_all_loss_terms_finite_and_gradients_finite(likelihood):
    module = make_module(dict.fromkeys(MODS, likelihood))
    module.train()
    out = seeded_loss(module, make_batch())
    assert set(out.terms) == set(LOSS_TERMS)
    assert set(out.nll) == set(MODS)
    for name, value in out.terms.items():
        assert value.shape == () and torch.isfinite(value), name
    assert torch.isfinite(out.total)
    torch.testing.assert_close(out.terms["nll"], out.nll["rna"] + out.nll["adt"])
    if likelihood in ("nb", "zinb", "bernoulli"):  # discrete: nll >= 0
        assert all(v > 0 for v in out.nll.values())

    out.total.backward()
    grads = {n: p.grad for n, p in module.named_parameters()}
    for name, grad in grads.items():
        if grad is not None:
            assert torch.isfinite(grad).all(), name
    for key in (
        "graph.table",
        "encoders.nets.rna.0.weight",
        "encoders.nets.adt.0.weight",
        "decoders.rna.scale",
        "decoders.adt.shift",
        "fusion.gate.weight",
    ):
        assert grads[key] is not None and grads[key].abs().sum() > 0, key


def test_monitor_is_the_weighted_sum_without_disc():
    module = make_module()
    w = LossWeights(kl_z=0.5, kl_u=2.0, kl_c=3.0, kl_v=0.1, graph=None, sup=1.0, disc=7.0)
    out = seeded_loss(module, make_batch(), w)
    t = out.terms
    expected = (
        t["nll"]
        + 0.5 * t["kl_z"]
        + 2.0 * t["kl_u"]
        + 3.0 * t["kl_c"]
        + 0.1 * t["kl_v"]
        + 2.0 * t["graph"]
        + t["sup"]
    )  # graph weight None = number of modalities
    torch.testing.assert_close(out.monitor, expected)
    torch.testing.assert_close(out.total, expected + 7.0 * t["disc"])


@pytest.mark.parametrize("fill", [1e6, float("nan")])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_rows_of_absent_modalities_are_ignored(mode, fill):
    module = make_module()
    getattr(module, mode)()
    batch = make_batch()
    reference = seeded_loss(module, batch)

    garbage = dict(batch)
    for j, m in enumerate(MODS):
        absent = ~batch[K.OBS_MASK][:, j]
        for key in (K.X, K.ENC):
            value = batch[K.mod_key(key, m)].clone()
            value[absent] = fill
            garbage[K.mod_key(key, m)] = value
    changed = seeded_loss(module, garbage)

    assert torch.isfinite(changed.total)
    for name in LOSS_TERMS:
        assert torch.equal(changed.terms[name], reference.terms[name]), name
    for m in MODS:
        assert torch.equal(changed.nll[m], reference.nll[m]), m


def test_modality_absent_from_minibatch_has_no_nll_term():
    module = make_module()
    module.train()
    sub = {k: v[8:] for k, v in make_batch().items()}  # adt-only cells
    sub[K.mod_key(K.X, "rna")][:] = float("nan")  # never read: no cell has rna
    sub[K.mod_key(K.ENC, "rna")][:] = float("nan")
    out = seeded_loss(module, sub)
    assert set(out.nll) == {"adt"}
    torch.testing.assert_close(out.terms["nll"], out.nll["adt"])
    assert torch.isfinite(out.total)


def make_fmask_batch():
    batch = make_batch()
    fmask = torch.ones(N_CELLS, N_FEATURES, dtype=torch.bool)
    fmask[:4, 5:] = False  # cells 0-3 did not measure rna features 5-7
    fmask[~batch[K.OBS_MASK][:, 0]] = False
    batch[K.mod_key(K.FMASK, "rna")] = fmask
    x = batch[K.mod_key(K.X, "rna")].clone()
    x[:4, 5:] = 0
    batch[K.mod_key(K.X, "rna")] = x
    return batch, fmask


@pytest.mark.parametrize("likelihood", ["nb", "zinb"])
def test_unmeasured_features_do_not_change_the_nll(likelihood):
    module = make_module(dict.fromkeys(MODS, likelihood))
    module.train()
    batch, fmask = make_fmask_batch()
    reference = seeded_loss(module, batch)

    noisy = dict(batch)
    x = batch[K.mod_key(K.X, "rna")].clone()
    x[:4, 5:] = torch.tensor([7.0, 300.0, 1000.0])
    noisy[K.mod_key(K.X, "rna")] = x
    changed = seeded_loss(module, noisy)

    assert torch.isfinite(changed.nll["rna"])
    torch.testing.assert_close(changed.nll["rna"], reference.nll["rna"], rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(changed.total, reference.total, rtol=1e-6, atol=1e-5)


def test_feature_mask_matters_for_measured_features():
    """Control for the test above: changing a measured feature does change the nll."""
    module = make_module()
    module.train()
    batch, _ = make_fmask_batch()
    reference = seeded_loss(module, batch)
    changed_batch = dict(batch)
    x = batch[K.mod_key(K.X, "rna")].clone()
    x[:4, :2] += 50
    changed_batch[K.mod_key(K.X, "rna")] = x
    changed = seeded_loss(module, changed_batch)
    assert abs(changed.nll["rna"].item() - reference.nll["rna"].item()) > 1.0


def test_semi_supervised_terms():
    module = make_module()
    module.train()
    batch = make_batch()
    unlabelled = seeded_loss(module, batch)
    assert unlabelled.terms["sup"].item() == 0.0
    assert unlabelled.terms["kl_c"].item() >= -1e-6

    labelled = dict(batch)
    labels = torch.full((N_CELLS,), K.UNLABELED)
    labels[[0, 5, 9]] = torch.tensor([0, 1, 2])
    labelled[K.LABEL] = labels
    out = seeded_loss(module, labelled)
    assert out.terms["sup"].item() > 0.0
    assert torch.isfinite(out.total)
    out.total.backward()
    assert module.latent.c_net[1].weight.grad.abs().sum() > 0


def test_all_cells_labelled_gives_zero_kl_c():
    module = make_module()
    batch = make_batch()
    batch[K.LABEL] = torch.arange(N_CELLS) % 3
    out = seeded_loss(module, batch)
    assert out.terms["kl_c"].item() == 0.0
    assert out.terms["sup"].item() > 0.0


def test_sup_is_cross_entropy_of_q_c_against_labels():
    module = make_module()
    module.eval()
    batch = make_batch()
    labels = torch.full((N_CELLS,), K.UNLABELED)
    labels[[1, 2, 10]] = torch.tensor([2, 0, 1])
    batch[K.LABEL] = labels
    torch.manual_seed(7)
    out = module.loss(batch, LossWeights())
    # reproduce z with the same seed: the first random draw of loss() is qz.rsample()
    torch.manual_seed(7)
    qz, _ = module.encode(batch)
    z = qz.rsample()
    log_q = torch.log_softmax(module.latent.c_logits(z), dim=1)
    expected = -log_q[[1, 2, 10], [2, 0, 1]].mean()
    torch.testing.assert_close(out.terms["sup"], expected)


def test_modality_in_a_single_cell_of_the_minibatch_in_training_mode():
    module = make_module()
    module.train()
    batch = make_batch()
    obs_mask = batch[K.OBS_MASK].clone()
    obs_mask[:, 1] = False
    obs_mask[3, 1] = True  # adt in exactly one cell
    obs_mask[:, 0] = True
    batch[K.OBS_MASK] = obs_mask
    out = seeded_loss(module, batch)
    assert set(out.nll) == {"rna", "adt"}
    assert all(torch.isfinite(v) for v in out.terms.values())
    out.total.backward()
    assert torch.isfinite(module.decoders["adt"].scale.grad).all()
