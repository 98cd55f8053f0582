"""The wide-input first layer (mmaavi.nn.wide) computes nn.Linear's values and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmaavi.nn.wide import DENSE_ABOVE_FRACTION, SparseRows, WideLinear

N_IN, N_OUT = 600, 16


def _sparse_rows(n_rows: int, density: float, seed: int = 0) -> SparseRows:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(3, N_IN, generator=g)
    base[2] = 0.0  # the zero row of cells lacking the modality
    group = torch.randint(0, 3, (n_rows,), generator=g)
    stored = torch.rand(n_rows, N_IN, generator=g) < density
    rows, cols = stored.nonzero(as_tuple=True)  # sorted by row, as the data loader gives them
    values = torch.rand(rows.numel(), generator=g) * 3
    return SparseRows(base, group, rows, cols, values)


def _pair(seed: int = 0) -> tuple[nn.Linear, WideLinear]:
    torch.manual_seed(seed)
    reference = nn.Linear(N_IN, N_OUT)
    torch.manual_seed(seed)
    wide = WideLinear(N_IN, N_OUT)
    return reference, wide


def test_initial_values_are_those_nn_linear_draws():
    reference, wide = _pair()
    assert wide.weight.shape == (N_IN, N_OUT)
    assert torch.equal(wide.weight, reference.weight.t())
    assert torch.equal(wide.bias, reference.bias)


@pytest.mark.parametrize("density", [0.0, 0.005, 0.5])  # no entry, sparse kernels, dense fallback
def test_sparse_rows_give_linear_values_and_gradients(density):
    reference, wide = _pair()
    x = _sparse_rows(40, density)
    if density > DENSE_ABOVE_FRACTION:
        assert x.values.numel() > DENSE_ABOVE_FRACTION * 40 * N_IN
    dense = x.to_dense()
    # to_dense is the matrix the pieces stand for
    expected_dense = x.base[x.group].clone()
    expected_dense[x.rows, x.cols] += x.values
    assert torch.equal(dense, expected_dense)

    upstream = torch.randn(40, N_OUT, generator=torch.Generator().manual_seed(1))
    out_ref = reference(dense)
    (out_ref * upstream).sum().backward()
    out = wide(x)
    (out * upstream).sum().backward()
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(wide.weight.grad, reference.weight.grad.t(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(wide.bias.grad, reference.bias.grad, rtol=1e-5, atol=1e-5)
    assert wide.weight.grad.shape == wide.weight.shape


def test_dense_input_and_old_state_dict_layout():
    reference, wide = _pair(seed=3)
    torch.manual_seed(9)
    other = WideLinear(N_IN, N_OUT)
    # a state dict of nn.Linear's layout (models saved before WideLinear) loads transposed
    other.load_state_dict(reference.state_dict())
    assert torch.equal(other.weight, wide.weight)
    x = torch.randn(5, N_IN)
    torch.testing.assert_close(other(x), reference(x))
    # and its own layout loads as is
    other.load_state_dict(wide.state_dict())
    assert torch.equal(other.weight, wide.weight)


def test_sparse_product_under_bf16_autocast_stays_float32():
    _, wide = _pair()
    x = _sparse_rows(10, 0.005)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = wide(x)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert wide.weight.grad.dtype == torch.float32


def test_square_layer_is_refused():
    with pytest.raises(ValueError, match="in_features != out_features"):
        WideLinear(16, 16)
