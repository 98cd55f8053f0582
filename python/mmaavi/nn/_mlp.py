"""The fully connected block used throughout mmAAVI."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .wide import WideLinear


def mlp(
    n_in: int,
    hidden: Sequence[int],
    *,
    dropout: float = 0.2,
    batch_norm: bool = True,
    wide_input: bool = False,
) -> nn.Sequential:
    """Stack of ``Linear -> BatchNorm -> LeakyReLU(0.2) -> Dropout`` layers.

    Parameters
    ----------
    n_in
        Input width.
    hidden
        Width of each layer; the output width is ``hidden[-1]``. Empty gives the identity.
    dropout
        Dropout rate after each activation (0 disables it).
    batch_norm
        Whether to normalise each layer's pre-activation over the minibatch.
    wide_input
        Make the first layer a :class:`~mmaavi.nn.wide.WideLinear` (same initial values), which
        also takes :class:`~mmaavi.nn.wide.SparseRows` input.
    """
    layers: list[nn.Module] = []
    for n_out in hidden:
        first = wide_input and not layers
        layers.append(WideLinear(n_in, n_out) if first else nn.Linear(n_in, n_out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(n_out))
        layers.append(nn.LeakyReLU(0.2))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = n_out
    return nn.Sequential(*layers)


def run_batchnorm_safe(net: nn.Module, x):
    """Run ``net`` on ``x``; a single cell in training mode uses BatchNorm's running statistics.

    BatchNorm cannot normalise one sample, and a modality can be present in only one cell of a
    minibatch in a mosaic.
    """
    if x.shape[0] != 1 or not net.training:
        return net(x)
    net.eval()
    try:
        return net(x)
    finally:
        net.train()


def present_rows(present: torch.Tensor) -> torch.Tensor | None:
    """Positions of the True entries of a bool (n_cells,) mask; None when all are True.

    ``x.index_select(0, rows)`` then gives the rows ``x[present]`` gives, in the same order,
    and the common all-present case needs no gather at all.
    """
    rows = present.nonzero().squeeze(1)
    return None if rows.numel() == present.numel() else rows
