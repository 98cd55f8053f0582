"""Which weights a run ends with: the last epoch's (default) or, with restore_best, the best's.

The validation loss is made lowest at epoch 2 of 5, so the two rules must give different models,
each equal to a run stopped at the epoch it claims to keep.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import mmaavi
from mmaavi.train import _loop
from mmaavi.train._checkpoint import load_checkpoint, save_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _mosaics import SMALL, tiny_mosaic  # noqa: E402

SETTINGS = {"max_epochs": 5, "seed": 1, "progress": "none", "early_stopping_patience": 100}
BEST = 2


def build() -> mmaavi.MMAAVI:
    return mmaavi.MMAAVI(tiny_mosaic(), n_components=3, **SMALL)


@pytest.fixture
def best_at_epoch_two(monkeypatch):
    """The monitored validation loss is far lower at epoch ``BEST`` than at any other."""
    real = _loop._Run._evaluate

    def evaluate(self):
        values = real(self)
        if self.epoch + 1 == BEST:  # self.epoch is the last finished epoch while validating
            values["monitor"] -= 1e6
        return values

    monkeypatch.setattr(_loop._Run, "_evaluate", evaluate)


def embedding_after(epochs: int) -> np.ndarray:
    model = build().train(**{**SETTINGS, "max_epochs": epochs})
    return model.get_latent_representation()


def test_default_keeps_the_last_epoch_and_restore_best_the_best(best_at_epoch_two):
    last = build().train(**SETTINGS)
    best = build().train(**SETTINGS, restore_best=True)
    for model in (last, best):
        assert model.train_info["best_epoch"] == BEST
        assert model.train_info["n_epochs"] == SETTINGS["max_epochs"]
    # the validation loss steers both runs the same way: the same losses, epoch by epoch
    losses = [c for c in last.history.columns if c != "seconds"]
    np.testing.assert_array_equal(last.history[losses], best.history[losses])
    assert (
        last.train_info["kept_epoch"] == SETTINGS["max_epochs"]
        and not last.train_info["restore_best"]
    )
    assert best.train_info["kept_epoch"] == BEST and best.train_info["restore_best"]

    z_last, z_best = last.get_latent_representation(), best.get_latent_representation()
    assert not np.allclose(z_last, z_best)
    np.testing.assert_array_equal(z_last, embedding_after(5))
    np.testing.assert_array_equal(z_best, embedding_after(BEST))


def test_restore_best_survives_a_resume(tmp_path, best_at_epoch_two):
    build().train(**{**SETTINGS, "max_epochs": 3}, restore_best=True, checkpoint_dir=tmp_path)
    resumed = build().train(**SETTINGS, restore_best=True, checkpoint_dir=tmp_path, resume=True)
    assert resumed.train_info["kept_epoch"] == BEST
    np.testing.assert_array_equal(resumed.get_latent_representation(), embedding_after(BEST))


def test_checkpoint_from_before_restore_best_resumes_as_it_ran(tmp_path):
    """Checkpoints written before the option existed restored the best weights."""
    build().train(**{**SETTINGS, "max_epochs": 2}, restore_best=True, checkpoint_dir=tmp_path)
    state = load_checkpoint(tmp_path)
    del state["json"]["plan"]["restore_best"], state["json"]["kept_epoch"]
    save_checkpoint(tmp_path, state)
    with pytest.raises(ValueError, match=r"restore_best: True then, False now"):
        build().train(**SETTINGS, checkpoint_dir=tmp_path, resume=True)
    resumed = build().train(**SETTINGS, restore_best=True, checkpoint_dir=tmp_path, resume=True)
    assert resumed.train_info["resumed_from_epoch"] == 2
    assert resumed.train_info["kept_epoch"] == resumed.train_info["best_epoch"]
