"""Training's deterministic-kernel context restores exactly the caller's settings on exit."""

from __future__ import annotations

import pytest
import torch

from mmaavi.train._loop import _deterministic


@pytest.fixture
def restore_torch_flags():
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
    )
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.utils.deterministic.fill_uninitialized_memory = before[2]


@pytest.mark.parametrize("enabled", [True, False])
def test_caller_warn_only_mode_is_restored(restore_torch_flags, enabled):
    torch.use_deterministic_algorithms(True, warn_only=True)
    with _deterministic(enabled):
        assert torch.are_deterministic_algorithms_enabled()
        # while training: strict when we turned it on, the caller's setting otherwise
        assert torch.is_deterministic_algorithms_warn_only_enabled() is (not enabled)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()


def test_off_by_default_is_restored_and_fill_flag_put_back(restore_torch_flags):
    torch.use_deterministic_algorithms(False)
    torch.utils.deterministic.fill_uninitialized_memory = True
    with _deterministic(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is True


def test_restored_when_training_raises(restore_torch_flags):
    torch.use_deterministic_algorithms(False)
    with pytest.raises(RuntimeError, match="boom"):
        with _deterministic(True):
            raise RuntimeError("boom")
    assert not torch.are_deterministic_algorithms_enabled()
