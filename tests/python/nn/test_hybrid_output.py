"""The decoders' hybrid output computed in column tiles for wide modalities (nn/_hybrid_output)."""

from __future__ import annotations

import pytest
import torch

import mmaavi.nn._hybrid_output as hybrid
from mmaavi.nn.decoders import HybridDecoder

# wider than the tiling threshold and not a multiple of the tile: the last tile is partial
N_FEATURES = hybrid.TILED_OUTPUT_FEATURES + hybrid.TILE_FEATURES // 2 + 7


def _leaves(n_cells: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(n_cells, 256), (N_FEATURES, 256), (N_FEATURES,), (n_cells, 12), (N_FEATURES, 12)]
    return [torch.randn(s, generator=gen).requires_grad_() for s in shapes]


def _plain(hidden, weight, bias, z, v, w):
    """hybrid_output's own single-product path (the threshold out of reach)."""
    saved = hybrid.TILED_OUTPUT_FEATURES
    hybrid.TILED_OUTPUT_FEATURES = 10**9
    try:
        return hybrid.hybrid_output(hidden, weight, bias, z, v, w)
    finally:
        hybrid.TILED_OUTPUT_FEATURES = saved


def _value_and_grads(fn, leaves, grad):
    leaves = [x.detach().clone().requires_grad_(x.requires_grad) for x in leaves]
    out = fn(*leaves, 0.9)
    out.backward(grad)
    return [out.detach()] + [x.grad for x in leaves]


@pytest.mark.parametrize("n_cells", [1, 33, 142])
def test_tiled_output_and_gradients_equal_the_single_products(n_cells):
    leaves = _leaves(n_cells, seed=n_cells)
    grad = torch.randn(n_cells, N_FEATURES, generator=torch.Generator().manual_seed(1))
    tiled = _value_and_grads(hybrid._TiledHybridOutput.apply, leaves, grad)
    plain = _value_and_grads(_plain, leaves, grad)
    names = ["output", "hidden", "weight", "bias", "z", "v"]
    for name, a, b in zip(names, tiled, plain, strict=True):
        # each element is the same sum of the same products (bit for bit with MKL on the
        # development machines); allow float32 rounding in case a BLAS orders a tile otherwise
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)


def test_only_the_gradients_asked_for_are_computed():
    leaves = _leaves(5)
    leaves[4].requires_grad_(False)  # v fixed
    leaves[0] = leaves[0].detach()  # hidden fixed
    out = hybrid.hybrid_output(*leaves, 0.5)
    out.sum().backward()
    assert leaves[0].grad is None and leaves[4].grad is None
    assert all(x.grad is not None for x in leaves[1:4])


def test_decoder_uses_tiles_for_wide_outputs_only(monkeypatch):
    calls = []
    apply = hybrid._TiledHybridOutput.apply
    monkeypatch.setattr(
        hybrid._TiledHybridOutput, "apply", lambda *a: calls.append(a[1].shape[0]) or apply(*a)
    )
    torch.manual_seed(0)
    z, batch = torch.randn(20, 12), torch.tensor([0, 1] * 10)
    for n_features in (300, N_FEATURES):
        decoder = HybridDecoder(12, n_features, 2).eval()  # eval: no dropout mask to redraw
        v = torch.randn(n_features, 12)
        logits = decoder.logits(z, v, batch)
        with monkeypatch.context() as patch:
            patch.setattr(hybrid, "TILED_OUTPUT_FEATURES", 10**9)
            untiled = decoder.logits(z, v, batch)
        torch.testing.assert_close(logits, untiled, rtol=1e-6, atol=1e-6)
    assert calls == [N_FEATURES]


def test_autocast_and_other_devices_take_the_single_products():
    hidden, weight = torch.zeros(2, 256), torch.zeros(N_FEATURES, 256)
    assert hybrid._tiled(hidden, weight)
    assert not hybrid._tiled(hidden, weight[:300])
    assert not hybrid._tiled(hidden.double(), weight.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not hybrid._tiled(hidden, weight)
