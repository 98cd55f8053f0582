"""A wide ``log1p_norm`` input (>= WIDE_INPUT_FEATURES features, ATAC peaks) travels as sparse
pieces and gives the model the values of the dense input.

Synthetic data (plumbing, not quality): 150 cells in three batches, RNA in ``a`` and ``b``, a
4200-peak ATAC modality in ``b`` and ``c`` whose two blocks measured different peaks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mmaavi
import mmaavi.nn.wide as wide_module
from _mosaics import SMALL, counts_adata
from mmaavi import _constants as K
from mmaavi.module import LossWeights
from mmaavi.nn.wide import WIDE_INPUT_FEATURES, SparseRows, WideLinear

N_PEAKS = WIDE_INPUT_FEATURES + 104


def _wide_mosaic():
    rng = np.random.default_rng(0)
    cells = [f"c{i}" for i in range(150)]
    batches = ["a"] * 50 + ["b"] * 50 + ["c"] * 50
    rna = counts_adata(cells[:100], [f"g{i}" for i in range(30)], batches[:100], seed=0)
    peaks = [f"chr1:{100 * i}-{100 * i + 50}" for i in range(N_PEAKS)]
    blocks = []
    for lo, hi, features in ((50, 100, peaks[:-40]), (100, 150, peaks[40:])):
        x = rng.poisson(0.01, (hi - lo, len(features))).astype(np.float32)
        blocks.append(counts_adata(cells[lo:hi], features, batches[lo:hi], x=x))
    return mmaavi.data.mosaic({"rna": rna, "atac": blocks})


@pytest.fixture(scope="module")
def mdata():
    return _wide_mosaic()


def _dense_threshold(monkeypatch) -> None:
    """Make every input narrow: the dense path the wide one must agree with."""
    monkeypatch.setattr(wide_module, "WIDE_INPUT_FEATURES", 10**9)


def test_sparse_pieces_are_the_dense_input(mdata):
    model = mmaavi.MMAAVI(mdata, n_components=3, **SMALL)
    data = model.data
    assert data.transforms["atac"].wide and not data.transforms["rna"].wide
    assert data.block_measured["atac"] is not None  # the two blocks measured different peaks
    idx = np.arange(0, 150, 3)  # cells of all three batches, some without ATAC
    batch = data.minibatch(idx)
    assert K.mod_key(K.ENC, "atac") not in batch and K.mod_key(K.ENC, "rna") in batch
    pieces = SparseRows(*(batch[K.mod_key(k, "atac")] for k in K.ENC_SPARSE))
    assert pieces.values.numel() > 0
    j = data.modalities.index("atac")
    fmask = batch[K.mod_key(K.FMASK, "atac")].numpy()
    dense = data.transforms["atac"].encode(
        data.counts["atac"][idx], idx, data.batch[idx], data.obs_mask[idx, j], fmask
    )
    torch.testing.assert_close(pieces.to_dense(), dense, rtol=1e-5, atol=1e-5)
    # unmeasured peaks and cells without ATAC are exactly 0, as in the dense input
    assert torch.equal(pieces.to_dense() == 0, dense == 0)


def test_loss_and_gradients_match_the_dense_path(mdata, monkeypatch):
    idx = np.arange(0, 150, 2)

    def loss_and_grads():
        torch.manual_seed(0)
        model = mmaavi.MMAAVI(mdata, n_components=3, **SMALL)
        module = model.module.train()
        torch.manual_seed(1)
        out = module.loss(model.data.minibatch(idx), LossWeights())
        out.total.backward()
        first = module.encoders.nets["atac"][0]
        grad = first.weight.grad if isinstance(first, WideLinear) else first.weight.grad.t()
        return isinstance(first, WideLinear), out.total.detach(), grad

    wide, total_wide, grad_wide = loss_and_grads()
    _dense_threshold(monkeypatch)
    dense, total_dense, grad_dense = loss_and_grads()
    assert wide and not dense
    torch.testing.assert_close(total_wide, total_dense, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad_wide, grad_dense, rtol=1e-4, atol=1e-5)


def test_sparse_targets_give_the_dense_targets_loss_bit_for_bit(mdata):
    """The wide NB modality's counts travel as their non-zero entries; with integer counts the
    reconstruction terms and gradients are those of the dense counts exactly."""
    torch.manual_seed(0)
    model = mmaavi.MMAAVI(mdata, n_components=3, **SMALL)
    data, module = model.data, model.module.train()
    assert data.sparse_targets("atac") and not data.sparse_targets("rna")
    idx = np.arange(0, 150, 2)  # cells of all three batches, a third without ATAC
    sparse = data.minibatch(idx)
    assert K.mod_key(K.X, "atac") not in sparse and K.mod_key(K.X, "rna") in sparse
    dense = {k: v for k, v in sparse.items() if k not in {K.mod_key(x, "atac") for x in K.X_SPARSE}}
    dense[K.mod_key(K.X, "atac")] = torch.from_numpy(data.counts["atac"][idx].toarray())
    values = sparse[K.mod_key("x_values", "atac")]
    assert values.numel() == int((dense[K.mod_key(K.X, "atac")] != 0).sum()) > 0

    def nll_and_grad(batch):
        module.zero_grad()
        torch.manual_seed(1)
        out = module.loss(batch, LossWeights())
        out.total.backward()
        return out.nll["atac"].detach(), module.decoders["atac"].mlp[-1].weight.grad.clone()

    nll_sparse, grad_sparse = nll_and_grad(sparse)
    nll_dense, grad_dense = nll_and_grad(dense)
    assert torch.equal(nll_sparse, nll_dense)
    assert torch.equal(grad_sparse, grad_dense)


def test_trains_saves_and_loads(mdata, tmp_path):
    model = mmaavi.MMAAVI(mdata, n_components=3, **SMALL)
    model.train(max_epochs=2, seed=0, progress="none")
    z = model.get_latent_representation()
    assert np.isfinite(z).all() and z.shape == (150, SMALL["n_latent"])
    model.save(tmp_path / "model")
    loaded = mmaavi.MMAAVI.load(tmp_path / "model", mdata)
    np.testing.assert_array_equal(loaded.get_latent_representation(), z)


def test_version_1_checkpoint_of_a_wide_model_is_refused(mdata, tmp_path):
    ckpt = tmp_path / "ckpt"
    model = mmaavi.MMAAVI(mdata, n_components=3, **SMALL)
    model.train(max_epochs=1, seed=0, progress="none", checkpoint_dir=ckpt)
    path = ckpt / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["version"] = 1
    torch.save(state, path)
    again = mmaavi.MMAAVI(mdata, n_components=3, **SMALL)
    with pytest.raises(ValueError, match="stored the first encoder layer .* another layout"):
        again.train(max_epochs=2, seed=0, progress="none", checkpoint_dir=ckpt, resume=True)
