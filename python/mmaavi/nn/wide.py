"""The first encoder layer for a wide, mostly-zero input (ATAC peaks; MODEL.md §2).

The ``log1p_norm`` input of a count matrix is dense only because of its per-batch centring: a zero
count becomes ``-mean[b, f] / std[b, f]``, the same row for every cell of batch ``b``. Written as
``base[group] + S``, with one base row per (batch, block) of a minibatch and ``S`` holding the
stored counts' ``log1p(x) / std``, the layer's product costs one small dense product over the base
rows plus a gather over the stored entries. On the SNARE-seq mosaic (25,734 peaks, 0.27 % stored)
this replaced two (~100 x 25,734) x (25,734 x 256) matrix products a training step.

The weight is held ``(in_features, out_features)``, transposed against :class:`torch.nn.Linear`,
so the weights of one input feature are contiguous for the gather and for the gradient's scatter.
The values it computes are ``nn.Linear``'s, summed in another order.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

#: inputs this wide (and wider) of a ``log1p_norm`` modality are passed as :class:`SparseRows`
WIDE_INPUT_FEATURES = 4096


def is_wide(n_features: int) -> bool:
    """Whether an input of ``n_features`` is wide: the one rule the data (which passes it as
    :class:`SparseRows`) and the encoders (which give it a :class:`WideLinear`) both follow."""
    return n_features >= WIDE_INPUT_FEATURES


#: a minibatch storing more than this fraction of its entries is multiplied densely instead
#: (the gather and scatter cost more per entry than a dense product's multiply-add)
DENSE_ABOVE_FRACTION = 0.02


class SparseRows(NamedTuple):
    """The (n_rows, n_features) matrix ``base[group] + S``, ``S`` sparse.

    Attributes
    ----------
    base
        Float32 (n_groups, n_features): the rows shared by groups of cells.
    group
        Int64 (n_rows,): each row's base row.
    rows, cols
        Int64 (nnz,): positions of the stored entries of ``S``, sorted by row.
    values
        Float32 (nnz,): the stored entries of ``S``.
    """

    base: torch.Tensor
    group: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return (self.group.shape[0], self.base.shape[1])

    def to_dense(self) -> torch.Tensor:
        """The matrix itself, (n_rows, n_features)."""
        out = self.base.index_select(0, self.group)
        return out.index_put_((self.rows, self.cols), self.values, accumulate=True)


class _SparseRowsLinear(torch.autograd.Function):
    """``x @ weight + bias`` for ``x`` given as :class:`SparseRows`; gradients for the weight and
    the bias only (the input is data)."""

    @staticmethod
    def forward(ctx, weight, bias, base, group, rows, cols, values):  # noqa: D102
        n_rows = group.shape[0]
        offsets = torch.searchsorted(rows, torch.arange(n_rows, device=rows.device))
        shared = torch.addmm(bias, base, weight).index_select(0, group)
        stored = nn.functional.embedding_bag(
            cols, weight, offsets, mode="sum", per_sample_weights=values
        )
        ctx.save_for_backward(base, group, rows, cols, values)
        return shared.add_(stored)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        base, group, rows, cols, values = ctx.saved_tensors
        per_group = grad.new_zeros((base.shape[0], grad.shape[1])).index_add_(0, group, grad)
        grad_weight = base.t().mm(per_group)
        grad_weight.index_add_(0, cols, grad.index_select(0, rows).mul_(values.unsqueeze(1)))
        return grad_weight, grad.sum(dim=0), None, None, None, None, None


class WideLinear(nn.Module):
    """``nn.Linear(in_features, out_features)`` with its weight stored transposed, taking dense
    input or :class:`SparseRows`.

    Initialised with the same values ``nn.Linear`` draws. A state dict holding the weight in
    ``nn.Linear``'s layout, ``(out_features, in_features)`` (models saved before this layer
    existed), loads as is: the weight is transposed on the way in.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        if in_features == out_features:
            # the old layout is recognised by its shape (see _load_from_state_dict)
            raise ValueError("WideLinear needs in_features != out_features.")
        self.in_features, self.out_features = int(in_features), int(out_features)
        reference = nn.Linear(in_features, out_features)
        self.weight = nn.Parameter(reference.weight.detach().t().contiguous())
        self.bias = nn.Parameter(reference.bias.detach().clone())

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

    def forward(self, x: torch.Tensor | SparseRows) -> torch.Tensor:
        if isinstance(x, SparseRows):
            n_rows, n_features = x.shape
            dense = x.values.numel() > DENSE_ABOVE_FRACTION * n_rows * n_features
            # the gather/scatter kernels are CPU ones (index_add_ is not deterministic on CUDA)
            if dense or x.values.device.type != "cpu":
                x = x.to_dense()
            else:
                # the product in float32 also under autocast: backward writes float32 gradients
                with torch.autocast(x.values.device.type, enabled=False):
                    return _SparseRowsLinear.apply(self.weight, self.bias, *x)
        return torch.addmm(self.bias, x, self.weight)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "weight"
        weight = state_dict.get(key)
        if weight is not None and tuple(weight.shape) == (self.out_features, self.in_features):
            state_dict[key] = weight.t().contiguous()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
