"""Masked auto-scaling attention and per-modality encoders (MODEL.md §2)."""

from __future__ import annotations

import copy

import pytest
import torch

from mmaavi.nn import AttentionFusion, ModalityEncoders

torch.set_num_threads(1)


def random_mask(n_cells: int, n_mod: int, generator: torch.Generator) -> torch.Tensor:
    """Random bool mask with at least one True per row."""
    mask = torch.rand(n_cells, n_mod, generator=generator) < 0.5
    empty = ~mask.any(dim=1)
    first = torch.randint(0, n_mod, (n_cells,), generator=generator)
    mask[empty, first[empty]] = True
    return mask


@pytest.mark.parametrize("n_mod", [2, 3, 5])
def test_weights_sum_to_one_over_present_and_zero_for_missing(n_mod):
    gen = torch.Generator().manual_seed(n_mod)
    torch.manual_seed(n_mod)
    fusion = AttentionFusion(6)
    h = torch.randn(64, n_mod, 6, generator=gen) * 3
    mask = random_mask(64, n_mod, gen)
    assert (~mask).any() and (mask.sum(1) > 1).any()  # the draw covers both cases

    fused, weights = fusion(h, mask)

    assert fused.shape == (64, 6) and weights.shape == (64, n_mod)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(64), rtol=0, atol=1e-6)
    assert torch.all(weights[~mask] == 0.0)
    assert torch.all(weights[mask] > 0.0)
    torch.testing.assert_close(fused, torch.einsum("nm,nmd->nd", weights, h))


def test_weights_do_not_depend_on_missing_representations():
    gen = torch.Generator().manual_seed(1)
    fusion = AttentionFusion(4)
    h = torch.randn(30, 3, 4, generator=gen)
    mask = random_mask(30, 3, gen)
    h_other = h.clone()
    h_other[~mask] = 1e6  # garbage where the modality is absent
    fused, weights = fusion(h, mask)
    fused_other, weights_other = fusion(h_other, mask)
    assert torch.equal(weights, weights_other)
    torch.testing.assert_close(fused, fused_other)


def test_single_modality_cell_gets_weight_one_and_its_representation():
    gen = torch.Generator().manual_seed(2)
    fusion = AttentionFusion(5)
    h = torch.randn(9, 3, 5, generator=gen)
    mask = torch.zeros(9, 3, dtype=torch.bool)
    mask[torch.arange(9), torch.arange(9) % 3] = True  # each cell measured in one modality
    mask[0] = True  # except cell 0: all three

    fused, weights = fusion(h, mask)

    for n in range(1, 9):
        m = n % 3
        assert weights[n, m].item() == 1.0
        assert torch.equal(fused[n], h[n, m])
    assert weights[0].max() < 1.0


def make_encoders(dropout: float = 0.0) -> ModalityEncoders:
    torch.manual_seed(0)
    return ModalityEncoders({"rna": 7, "adt": 4}, hidden=(8, 5), dropout=dropout)


def test_encoder_batchnorm_running_stats_use_only_present_cells():
    enc = make_encoders()
    enc.train()
    gen = torch.Generator().manual_seed(3)
    n = 24
    mask = torch.zeros(n, 2, dtype=torch.bool)
    mask[:16, 0] = True  # rna: cells 0..15
    mask[10:, 1] = True  # adt: cells 10..23
    inputs = {"rna": torch.randn(n, 7, generator=gen), "adt": torch.randn(n, 4, generator=gen)}
    inputs["rna"][~mask[:, 0]] = 1e6  # absent rows hold huge values
    inputs["adt"][~mask[:, 1]] = 1e6

    reference = copy.deepcopy(enc)
    out = enc(inputs, mask)

    for j, m in enumerate(("rna", "adt")):
        present = mask[:, j]
        expected = reference.nets[m](inputs[m][present])
        bn, bn_ref = enc.nets[m][1], reference.nets[m][1]
        assert isinstance(bn, torch.nn.BatchNorm1d)
        torch.testing.assert_close(bn.running_mean, bn_ref.running_mean)
        torch.testing.assert_close(bn.running_var, bn_ref.running_var)
        assert bn.running_mean.abs().max() < 100  # not contaminated by the 1e6 rows
        torch.testing.assert_close(out[present, j], expected)
        assert torch.all(out[~present, j] == 0.0)
    assert torch.isfinite(out).all()


def test_encoder_skips_modality_absent_from_minibatch():
    enc = make_encoders()
    enc.train()
    mask = torch.zeros(6, 2, dtype=torch.bool)
    mask[:, 0] = True
    inputs = {"rna": torch.randn(6, 7), "adt": torch.full((6, 4), float("nan"))}
    before = enc.nets["adt"][1].running_mean.clone()
    out = enc(inputs, mask)
    assert torch.all(out[:, 1] == 0.0)
    assert torch.equal(enc.nets["adt"][1].running_mean, before)
    assert enc.nets["adt"][1].num_batches_tracked.item() == 0


def test_encoder_modality_in_a_single_cell_in_training_mode():
    enc = make_encoders(dropout=0.2)
    enc.train()
    mask = torch.zeros(5, 2, dtype=torch.bool)
    mask[:, 0] = True
    mask[3, 1] = True  # adt present in exactly one cell
    inputs = {"rna": torch.randn(5, 7), "adt": torch.randn(5, 4)}
    bn = enc.nets["adt"][1]
    before = bn.running_mean.clone()

    out = enc(inputs, mask)

    assert torch.isfinite(out).all()
    assert out[3, 1].abs().sum() > 0
    assert torch.all(out[[0, 1, 2, 4], 1] == 0.0)
    assert enc.training and enc.nets["adt"].training  # mode restored
    # the single cell used the running statistics and did not update them
    assert torch.equal(bn.running_mean, before)
    assert bn.num_batches_tracked.item() == 0
    net_eval = copy.deepcopy(enc.nets["adt"]).eval()
    torch.testing.assert_close(out[3, 1], net_eval(inputs["adt"][3:4])[0])
