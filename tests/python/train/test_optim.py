"""FlatRMSprop gives torch's RMSprop updates, bit for bit, with one flat buffer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mmaavi.train import _optim as optim
from mmaavi.train._optim import FlatRMSprop


def _model() -> nn.ModuleDict:
    torch.manual_seed(0)
    model = nn.ModuleDict(
        {
            "body": nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3)),
            "head": nn.Linear(3, 2),  # gets a gradient on some steps only
        }
    )
    model.unused = nn.Parameter(torch.randn(4))  # never gets one
    return model


def _train(model: nn.ModuleDict, optimizer, steps: int, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        x = torch.randn(8, 5, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        y = model["body"](x)
        loss = model["head"](y).pow(2).sum() + y.sum() if step % 3 == 0 else y.pow(2).sum()
        loss.backward()
        optimizer.step()


def _assert_same(a: nn.Module, b: nn.Module) -> None:
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_same_updates_as_torch_rmsprop():
    reference, flat = _model(), _model()
    _train(reference, torch.optim.RMSprop(reference.parameters(), lr=1e-2), 30)
    _train(flat, FlatRMSprop(flat.parameters(), lr=1e-2), 30)
    _assert_same(reference, flat)
    assert torch.equal(flat.unused, _model().unused)  # no gradient ever: never moved


def test_same_updates_when_the_buffer_is_updated_in_segments(monkeypatch):
    # segments of at most 20 elements: several per step, some holding parameters that get
    # no gradient next to ones that do, one parameter larger than a segment (a segment of its
    # own, updated from its gradient in place: the scratch holds only the segments of several)
    monkeypatch.setattr(optim, "SEGMENT", 20)
    reference, flat = _model(), _model()
    optimizer = FlatRMSprop(flat.parameters(), lr=1e-2)
    assert len(optimizer._segments) > 3
    assert any(j - i == 1 for i, j in optimizer._segments)
    assert max(p.numel() for p in flat.parameters()) > 20 >= optimizer._scratch_grad.numel() > 0
    _train(reference, torch.optim.RMSprop(reference.parameters(), lr=1e-2), 30)
    _train(flat, optimizer, 30)
    _assert_same(reference, flat)


@pytest.mark.parametrize("tile", [1, 7, 16])
def test_same_updates_when_each_segment_is_updated_in_tiles(monkeypatch, tile):
    # tiles shorter than a parameter, of odd and of vector-friendly sizes, and a segment
    # longer than several tiles
    monkeypatch.setattr(optim, "TILE", tile)
    reference, flat = _model(), _model()
    optimizer = FlatRMSprop(flat.parameters(), lr=1e-2)
    assert optimizer._scratch_denom.numel() == tile
    _train(reference, torch.optim.RMSprop(reference.parameters(), lr=1e-2), 30)
    _train(flat, optimizer, 30)
    _assert_same(reference, flat)


def test_parameters_become_views_of_one_buffer_with_values_kept():
    model = _model()
    before = copy.deepcopy(model.state_dict())
    names = [n for n, _ in model.named_parameters()]
    optimizer = FlatRMSprop(model.parameters())
    after = model.state_dict()
    for name in names:
        assert torch.equal(before[name], after[name])
    with torch.no_grad():
        optimizer._flat.zero_()  # the parameters see changes to the buffer
    assert all(not p.any() for p in model.parameters())
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert storages == {optimizer._flat.untyped_storage().data_ptr()}
    # load_state_dict writes through the views into the buffer the optimiser updates
    model.load_state_dict(before)
    assert torch.equal(optimizer._flat, torch.cat([before[n].reshape(-1) for n in names]))


def test_state_dict_round_trip_resumes_identically():
    # 10 + 5 steps with one optimiser ...
    reference = _model()
    optimizer = FlatRMSprop(reference.parameters(), lr=1e-2)
    _train(reference, optimizer, 10, seed=1)
    _train(reference, optimizer, 5, seed=2)
    # ... equal 10 steps, then a fresh optimiser (other lr) loaded from the saved state, 5 more
    resumed = _model()
    first = FlatRMSprop(resumed.parameters(), lr=1e-2)
    _train(resumed, first, 10, seed=1)
    state = copy.deepcopy(first.state_dict())
    second = FlatRMSprop(resumed.parameters(), lr=0.5)
    second.load_state_dict(state)
    assert second.param_groups[0]["lr"] == pytest.approx(1e-2)
    _train(resumed, second, 5, seed=2)
    _assert_same(reference, resumed)


def test_loads_a_torch_rmsprop_state():
    reference, flat = _model(), _model()
    torch_opt = torch.optim.RMSprop(reference.parameters(), lr=1e-2)
    _train(reference, torch_opt, 7)
    flat.load_state_dict(reference.state_dict())
    flat_opt = FlatRMSprop(flat.parameters(), lr=1e-2)
    flat_opt.load_state_dict(torch_opt.state_dict())
    _train(reference, torch_opt, 6, seed=3)
    _train(flat, flat_opt, 6, seed=3)
    _assert_same(reference, flat)


def test_works_with_reduce_lr_on_plateau():
    model = _model()
    optimizer = FlatRMSprop(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=0)
    for _ in range(3):
        scheduler.step(1.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="at least one parameter"):
        FlatRMSprop([])
    mixed = [nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2, dtype=torch.float64))]
    with pytest.raises(ValueError, match="one device with one dtype"):
        FlatRMSprop(mixed)
    other = _model()
    state = FlatRMSprop(other["head"].parameters()).state_dict()
    with pytest.raises(ValueError, match="other sizes"):
        FlatRMSprop(_model().parameters()).load_state_dict(state)


def test_zero_grad_drops_or_zeros_the_gradients():
    model = _model()
    optimizer = FlatRMSprop(model.parameters())
    model["body"](torch.randn(4, 5)).sum().backward()
    with_grad = [p for p in model.parameters() if p.grad is not None]
    assert with_grad
    optimizer.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in with_grad)
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_one_group_of_distinct_leaf_parameters_only():
    shared = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="more than once"):
        FlatRMSprop([shared, shared])
    with pytest.raises(ValueError, match="leaf tensors"):
        FlatRMSprop([nn.Parameter(torch.zeros(3)) * 2])
    optimizer = FlatRMSprop(_model().parameters())
    with pytest.raises(ValueError, match="one parameter group"):
        optimizer.add_param_group({"params": [nn.Parameter(torch.zeros(2))]})


def test_same_updates_with_gradient_free_parameters_between_others():
    """Parameters without a gradient between ones with (as the NB decoders' zero-inflation
    logits sit among the decoder weights): each run of the buffer is gathered or zeroed."""

    def model() -> nn.ParameterList:
        torch.manual_seed(0)
        return nn.ParameterList([nn.Parameter(torch.randn(n)) for n in (3, 2, 4, 1, 5, 2)])

    def train(params: nn.ParameterList, optimizer) -> None:
        for step in range(6):
            optimizer.zero_grad(set_to_none=True)
            used = (0, 2, 4) if step % 2 else (0, 1, 2, 4, 5)
            sum(params[k].pow(2).sum() * (k + 1) for k in used).backward()
            optimizer.step()

    reference, flat = model(), model()
    train(reference, torch.optim.RMSprop(reference.parameters(), lr=1e-2))
    train(flat, FlatRMSprop(flat.parameters(), lr=1e-2))
    for k, (a, b) in enumerate(zip(reference, flat)):
        assert torch.equal(a, b), k
    assert torch.equal(flat[3], model()[3])  # never a gradient: never moved


def test_runs_of_flags():
    assert optim._runs([True, True, False, True, False, False], 10) == [
        (10, 12, True),
        (12, 13, False),
        (13, 14, True),
        (14, 16, False),
    ]
    assert optim._runs([False], 0) == [(0, 1, False)]
