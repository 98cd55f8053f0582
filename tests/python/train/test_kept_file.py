"""The kept weights live in a temporary file, not in memory, and fall back to memory without one."""

from __future__ import annotations

import tempfile

import torch

from mmaavi.train import _kept
from mmaavi.train._kept import KeptWeights


def _module(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4))


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_keep_then_load_gives_the_weights_of_the_last_keep_not_those_since(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    module = _module(0)
    kept = KeptWeights(module)
    assert kept._memory is None and kept._file is not None  # on disk, not a copy in memory
    snapshot = _module(0)
    with torch.no_grad():
        module[0].weight.add_(1.0)  # later changes must not reach the copy
    assert not _equal(module, snapshot)
    kept.load_into(module)
    assert _equal(module, snapshot)

    # keep() overwrites: a smaller state after a larger one reads back whole
    other = _module(1)
    kept.keep(other)
    kept.load_into(module)
    assert _equal(module, other)
    kept.close()


def test_set_takes_a_checkpoint_state_and_state_returns_a_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    module, source = _module(0), _module(3)
    kept = KeptWeights(module)
    kept.set(source.state_dict())
    state = kept.state()
    assert all(torch.equal(state[k], v) for k, v in source.state_dict().items())
    state["0.weight"].zero_()  # a copy: editing it leaves the kept weights alone
    kept.load_into(module)
    assert _equal(module, source)


def test_without_a_temporary_file_the_copy_stays_in_memory(monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise OSError("read-only file system")

    monkeypatch.setattr(_kept.tempfile, "TemporaryFile", refuse)
    module = _module(0)
    kept = KeptWeights(module)
    assert "stay in memory" in caplog.text
    snapshot = _module(0)
    with torch.no_grad():
        module[0].weight.mul_(3.0)
    kept.load_into(module)
    assert _equal(module, snapshot)


def test_a_failing_write_falls_back_to_memory_with_the_new_weights(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    module = _module(0)
    kept = KeptWeights(module)
    real_save = torch.save

    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(_kept.torch, "save", full_disk)
    newer = _module(5)
    kept.keep(newer)
    monkeypatch.setattr(_kept.torch, "save", real_save)
    assert "failed" in caplog.text and kept._file is None
    kept.load_into(module)
    assert _equal(module, newer)
