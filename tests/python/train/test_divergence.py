"""Divergence: a NaN/Inf loss stops training with a clear message and finite, restored weights."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mmaavi
from mmaavi.module import MMAAVIModule
from mmaavi.train import DivergenceError
from mmaavi.train._optim import FlatRMSprop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _mosaics import SMALL, tiny_mosaic  # noqa: E402


def build() -> mmaavi.MMAAVI:
    return mmaavi.MMAAVI(tiny_mosaic(), n_components=3, **SMALL)


def finite_weights(model: mmaavi.MMAAVI) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.module.state_dict().values())


def test_huge_learning_rate_stops_with_a_clear_error_and_finite_weights():
    model = build()
    with pytest.raises(
        DivergenceError,
        match=r"diverged at epoch 1: the training loss term 'nll' \(reconstruction of modality "
        r"'rna'.*is nan.*initial weights\) were restored.*smaller learning rate",
    ):
        model.train(max_epochs=3, lr=1e6, seed=0, progress="none")
    assert finite_weights(model)
    assert not model.is_trained  # no epoch finished: still the (untrained) initial weights
    assert model.train_info["stop_reason"] == "diverged during epoch 1"
    # the module was rebuilt under the seed before training; its weights are those of that start
    torch.manual_seed(0)
    fresh = model._build_module().state_dict()
    for k, v in fresh.items():
        torch.testing.assert_close(model.module.state_dict()[k], v)


def test_nan_in_a_later_epoch_restores_the_last_finite_epoch(monkeypatch):
    """A loss that turns NaN in epoch 3 ends training; the epoch-2 weights come back."""
    model = build()
    real, calls = MMAAVIModule.loss, [0]

    def loss(self, batch, weights):
        out = real(self, batch, weights)
        if self.training:
            calls[0] += 1
            if calls[0] > 6:  # 3 training minibatches per epoch: NaN in epoch 3
                out.terms["kl_z"] = out.terms["kl_z"] * float("nan")
        return out

    monkeypatch.setattr(MMAAVIModule, "loss", loss)
    with pytest.raises(DivergenceError, match=r"epoch 3: the training loss term 'kl_z' is nan"):
        model.train(max_epochs=5, seed=0, progress="none", early_stopping_patience=100)
    monkeypatch.undo()
    assert finite_weights(model) and model.is_trained
    assert len(model.history) == 2 and model.train_info["best_epoch"] in (1, 2)
    assert model.train_info["kept_epoch"] == 2  # the last epoch before the NaN
    z = model.get_latent_representation()
    assert z.shape == (80, 4) and np.isfinite(z).all()


def test_weights_that_become_nan_are_caught_before_they_are_kept(monkeypatch):
    """An optimiser step that writes NaN into the weights at the end of an epoch is caught."""
    model = build()
    real_step = FlatRMSprop.step
    calls = [0]

    def step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == 3:  # the last step of epoch 1
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(FlatRMSprop, "step", step)
    with pytest.raises(DivergenceError, match=r"epoch 1: weight '.*' became NaN or infinite"):
        model.train(max_epochs=3, seed=0, progress="none", validation_size=0.0)
    assert finite_weights(model)
