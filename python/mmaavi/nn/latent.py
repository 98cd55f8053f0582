"""Gaussian-mixture latent space: q(z|x), q(c|z), q(u|c,z) and the prior p(z|c,u) (MODEL.md §3).

The generative story: a discrete component ``c ~ Cat(1/K)`` and a continuous ``u ~ N(0, I)``
produce the cell's latent state ``z ~ N(f(c, u), g(c, u))``; the decoders produce each modality
from ``z``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal

from ._mlp import mlp

_STD_EPS = 1e-7


class GaussianHead(nn.Module):
    """Maps a representation to a diagonal Normal (softplus standard deviation)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.loc = nn.Linear(n_in, n_out)
        self.scale = nn.Linear(n_in, n_out)

    def forward(self, h: torch.Tensor) -> Normal:
        return Normal(self.loc(h), F.softplus(self.scale(h)) + _STD_EPS, validate_args=False)


class MixtureLatent(nn.Module):
    """Posterior networks and prior of the (c, u, z) hierarchy.

    Parameters
    ----------
    n_in
        Width of the fused cell representation.
    n_latent
        Dimension of z.
    n_latent_u
        Dimension of u.
    n_components
        Number of mixture components K.
    dropout
        Dropout rate of the hidden layers.
    """

    def __init__(
        self,
        n_in: int,
        n_latent: int = 30,
        n_latent_u: int = 30,
        n_components: int = 8,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.n_components = n_components
        self.z_hidden = mlp(n_in, (256,), dropout=dropout)
        self.z_head = GaussianHead(256, n_latent)
        self.c_net = nn.Sequential(
            mlp(n_latent, (50,), dropout=dropout), nn.Linear(50, n_components)
        )
        self.u_hidden = mlp(n_components + n_latent, (50,), dropout=dropout)
        self.u_head = GaussianHead(50, n_latent_u)
        self.prior_z = GaussianHead(n_components + n_latent_u, n_latent)

    def qz(self, h: torch.Tensor) -> Normal:
        """q(z|x) from the fused representation (n_cells, n_in)."""
        return self.z_head(self.z_hidden(h))

    def c_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of q(c|z), (n_cells, n_components)."""
        return self.c_net(z)

    def qu(self, c: torch.Tensor, z: torch.Tensor) -> Normal:
        """q(u|c,z) for a (relaxed) one-hot c (n_cells, K) and z (n_cells, n_latent)."""
        return self.u_head(self.u_hidden(torch.cat([c, z], dim=1)))

    def pz(self, c: torch.Tensor, u: torch.Tensor) -> Normal:
        """The prior p(z|c,u) = N(f(c,u), g(c,u))."""
        return self.prior_z(torch.cat([c, u], dim=1))
