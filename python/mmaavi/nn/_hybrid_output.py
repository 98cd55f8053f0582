"""The decoders' hybrid output ``o = (1 - w) (h W^T + b) + w z V^T`` (MODEL.md §6).

For a wide modality (ATAC: 25,734 peaks) these two products are the largest of a training step.
On the CPU, MKL computes the (n_cells x 256) x (256 x F) product several times slower per
multiply-add as one call than in column tiles of ~1,000 features (the tile of ``W`` and of the
output stay in cache): the SNARE-seq ATAC head's forward and backward took ~175 ms as single
calls and ~125 ms tiled for 95 cells (a stand-alone timing), and a whole training step 0.405 ->
0.367 CPU s (``benchmarks/step_time.py --atac-transform lsi --output both``). Each output
element and each gradient element is the same sum over the same terms either way, so the tiled
products give the same values bit for bit (``tests/python/nn/test_hybrid_output.py``).
"""

from __future__ import annotations

import torch

#: decoder outputs this wide (and wider) are computed in column tiles on the CPU
TILED_OUTPUT_FEATURES = 4096
#: features per tile: a (1024 x 256) float32 tile of ``W`` is 1 MB
TILE_FEATURES = 1024


def _tiles(n: int):
    for start in range(0, n, TILE_FEATURES):
        yield start, min(start + TILE_FEATURES, n)


class _TiledHybridOutput(torch.autograd.Function):
    """The products of :func:`hybrid_output` in tiles of output features; the backward is
    autograd's for the untiled expression, tiled where its products are over cells."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, z, v, w):  # noqa: D102
        scaled = hidden * (1.0 - w)
        out = hidden.new_empty(hidden.shape[0], weight.shape[0])
        for start, stop in _tiles(weight.shape[0]):
            tile = out[:, start:stop]
            torch.addmm(bias[start:stop], scaled, weight[start:stop].T, beta=1.0 - w, out=tile)
            tile.addmm_(z, v[start:stop].T, alpha=w)
        ctx.save_for_backward(scaled, weight, z, v)
        ctx.w = w
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        scaled, weight, z, v = ctx.saved_tensors
        w = ctx.w
        need_hidden, need_weight, need_bias, need_z, need_v, _ = ctx.needs_input_grad
        g_hidden = grad.mm(weight) * (1.0 - w) if need_hidden else None
        g_bias = (grad * (1.0 - w)).sum(0) if need_bias else None
        g_z = grad.mm(v) * w if need_z else None
        g_weight = weight.new_empty(weight.shape) if need_weight else None
        g_v = v.new_empty(v.shape) if need_v else None
        if need_weight or need_v:
            for start, stop in _tiles(weight.shape[0]):
                tile = grad[:, start:stop].t()
                if need_weight:
                    torch.mm(tile, scaled, out=g_weight[start:stop])
                if need_v:
                    torch.mm(tile, z, out=g_v[start:stop])
        if need_v:
            g_v.mul_(w)
        return g_hidden, g_weight, g_bias, g_z, g_v, None


def _autocast_on_cpu() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled()


def _tiled(hidden: torch.Tensor, weight: torch.Tensor) -> bool:
    # CPU float32 only: on a GPU one call is fast, and under autocast the products change dtype
    return (
        weight.shape[0] >= TILED_OUTPUT_FEATURES
        and hidden.device.type == "cpu"
        and hidden.dtype == weight.dtype == torch.float32
        and not _autocast_on_cpu()
    )


def hybrid_output(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    z: torch.Tensor,
    v: torch.Tensor,
    w: float,
) -> torch.Tensor:
    """``(1 - w) * (hidden @ weight.T + bias) + w * (z @ v.T)``, (n_cells, n_features).

    ``hidden`` is the MLP branch's last hidden layer (n_cells, 256), ``weight`` / ``bias`` its
    output layer's (``nn.Linear`` layout, (n_features, 256)), ``z`` (n_cells, n_latent), ``v``
    the modality's feature embeddings (n_features, n_latent), ``w`` the dot branch's weight.
    """
    if _tiled(hidden, weight):
        return _TiledHybridOutput.apply(hidden, weight, bias, z, v, w)
    # (1 - w) scales the narrow hidden rather than the output, so W's gradient needs no extra pass
    o = torch.addmm(bias, hidden * (1.0 - w), weight.T, beta=1.0 - w)
    return torch.addmm(o, z, v.T, alpha=w)
