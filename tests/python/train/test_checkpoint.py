"""Checkpoints and resume: atomic writes, kill-and-resume, Ctrl-C, untrusted checkpoint files.

A resumed run must reach, on CPU with a seed, exactly the weights of the run never interrupted.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import mmaavi
from mmaavi.train import _checkpoint, _loop
from mmaavi.train._checkpoint import CHECKPOINT_FILE, load_checkpoint

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
from _mosaics import SMALL, tiny_mosaic  # noqa: E402

SETTINGS = {"max_epochs": 6, "seed": 3, "progress": "none", "early_stopping_patience": 100}


def build(mdata=None, **kwargs) -> mmaavi.MMAAVI:
    mdata = tiny_mosaic(labels=True) if mdata is None else mdata
    return mmaavi.MMAAVI(mdata, n_components=3, label_key="cell_type", **{**SMALL, **kwargs})


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """Embedding of the uninterrupted run (semi-supervised, so the labelled pool is exercised)."""
    model = build().train(**SETTINGS)
    assert model.train_info["n_epochs"] == SETTINGS["max_epochs"]
    return model.get_latent_representation()


def checkpoint_epoch(directory: Path) -> int:
    return int(load_checkpoint(directory)["epoch"])


def test_checkpoint_holds_everything_to_resume(tmp_path):
    build().train(**{**SETTINGS, "max_epochs": 3}, checkpoint_dir=tmp_path, checkpoint_every=2)
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 3  # every 2 epochs, and always after the last one
    assert {"module", "best_module", "optimizer", "scheduler", "torch_rng"} <= set(state)
    assert state["pool_queue"] is not None  # semi-supervised sampling state
    assert len(state["json"]["history"]) == 3 and state["json"]["numpy_rng"]["bit_generator"]
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]  # no temporary file left


def test_resume_with_a_larger_max_epochs_equals_the_uninterrupted_run(tmp_path, reference):
    first = build().train(**{**SETTINGS, "max_epochs": 2}, checkpoint_dir=tmp_path)
    assert first.train_info["n_epochs"] == 2
    resumed = build().train(**SETTINGS, checkpoint_dir=tmp_path, resume=True)
    assert resumed.train_info["resumed_from_epoch"] == 2
    assert len(resumed.history) == SETTINGS["max_epochs"]
    np.testing.assert_array_equal(resumed.get_latent_representation(), reference)
    # resuming a finished run changes nothing
    again = build().train(**SETTINGS, checkpoint_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(again.get_latent_representation(), reference)


def test_resume_without_a_checkpoint_starts_a_new_run(tmp_path, reference):
    model = build().train(**SETTINGS, checkpoint_dir=tmp_path / "new", resume=True)
    np.testing.assert_array_equal(model.get_latent_representation(), reference)
    assert checkpoint_epoch(tmp_path / "new") == SETTINGS["max_epochs"]


_KILLED_RUN = """
import os, sys, time
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from _mosaics import SMALL, tiny_mosaic
import mmaavi
from mmaavi.train import _loop

real, calls = _loop.balanced_epoch, [0]

def balanced_epoch(*args, **kwargs):
    chunks = real(*args, **kwargs)
    calls[0] += 1
    if calls[0] < 4:
        return chunks
    def stall():  # epoch 4: one optimiser step, then wait to be killed
        yield chunks[0]
        print("READY", flush=True)
        time.sleep(600)
    return stall()

_loop.balanced_epoch = balanced_epoch
model = mmaavi.MMAAVI(tiny_mosaic(labels=True), n_components=3, label_key="cell_type", **SMALL)
model.train(**{settings!r}, checkpoint_dir={directory!r}, checkpoint_every=1)
print("FINISHED", flush=True)
"""


def test_run_killed_by_sigkill_resumes_to_the_uninterrupted_result(tmp_path, reference):
    script = _KILLED_RUN.format(tests=str(TESTS), settings=SETTINGS, directory=str(tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", f"the training subprocess said {line!r}"
        proc.send_signal(signal.SIGKILL)  # mid-epoch 4: no chance to clean up
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert checkpoint_epoch(tmp_path) == 3
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]

    resumed = build().train(**SETTINGS, checkpoint_dir=tmp_path, resume=True)
    assert resumed.train_info["resumed_from_epoch"] == 3
    assert resumed.train_info["n_epochs"] == SETTINGS["max_epochs"]
    np.testing.assert_array_equal(resumed.get_latent_representation(), reference)


def _interrupt_in_epoch(monkeypatch, epoch: int) -> None:
    """Raise KeyboardInterrupt after the first minibatch of ``epoch`` (as Ctrl-C would)."""
    real, calls = _loop.balanced_epoch, [0]

    def balanced_epoch(*args, **kwargs):
        chunks = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] < epoch:
            return chunks

        def interrupted():
            yield chunks[0]
            raise KeyboardInterrupt

        return interrupted()

    monkeypatch.setattr(_loop, "balanced_epoch", balanced_epoch)


def test_ctrl_c_stops_cleanly_keeps_the_last_epoch_and_says_how_to_resume(
    tmp_path, monkeypatch, reference
):
    model = build()
    _interrupt_in_epoch(monkeypatch, 3)
    with pytest.warns(UserWarning, match=r"interrupted \(Ctrl-C\) during epoch 3") as record:
        model.train(**SETTINGS, checkpoint_dir=tmp_path)
    message = str(record[0].message)
    assert "last completed epoch (2)" in message
    assert f"checkpoint_dir={str(tmp_path)!r}, resume=True" in message
    assert model.is_trained and len(model.history) == 2
    assert "interrupted" in model.train_info["stop_reason"]
    assert model.train_info["kept_epoch"] == 2
    monkeypatch.undo()
    # the weights of the end of epoch 2, not those half-way through epoch 3
    two_epochs = build().train(**{**SETTINGS, "max_epochs": 2})
    np.testing.assert_array_equal(
        model.get_latent_representation(), two_epochs.get_latent_representation()
    )

    resumed = build().train(**SETTINGS, checkpoint_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(resumed.get_latent_representation(), reference)


def test_ctrl_c_without_checkpoints_says_how_to_make_runs_resumable(monkeypatch):
    model = build()
    _interrupt_in_epoch(monkeypatch, 1)
    with pytest.warns(UserWarning, match=r"no epoch was completed.*Pass checkpoint_dir="):
        model.train(**SETTINGS)
    assert not model.is_trained


def test_existing_checkpoint_is_never_overwritten_by_a_new_run(tmp_path):
    build().train(**{**SETTINGS, "max_epochs": 1}, checkpoint_dir=tmp_path)
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(FileExistsError, match=r"holds a checkpoint of an earlier run.*resume=True"):
        build().train(**SETTINGS, checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before


def test_resume_with_numpy_scalars_in_the_settings(tmp_path):
    settings = {**SETTINGS, "max_epochs": 1, "weight_kl_z": np.float32(1.0)}
    build(unlabeled_category=np.str_("none")).train(**settings, checkpoint_dir=tmp_path)
    model = build(unlabeled_category=np.str_("none"))
    model.train(**{**settings, "max_epochs": 2}, checkpoint_dir=tmp_path, resume=True)
    assert model.train_info["resumed_from_epoch"] == 1


def test_resume_with_other_settings_or_another_model_is_refused(tmp_path):
    build().train(**{**SETTINGS, "max_epochs": 1}, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"training settings differ.*seed: 3 then, 4 now"):
        build().train(**{**SETTINGS, "seed": 4}, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"restore_best: False then, True now"):
        build().train(**SETTINGS, restore_best=True, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"another model or data \(differences in init_params"):
        build(n_latent=5).train(**SETTINGS, checkpoint_dir=tmp_path, resume=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"resume": True}, "resume=True needs checkpoint_dir"),
        ({"checkpoint_dir": "x", "checkpoint_every": 0}, "checkpoint_every must be a positive"),
    ],
)
def test_bad_checkpoint_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build().train(**SETTINGS, **kwargs)


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    build().train(**{**SETTINGS, "max_epochs": 1}, checkpoint_dir=tmp_path)
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    real_save = torch.save

    def torn_save(obj, fh):
        fh.write(b"PK\x03\x04 half a zip file")  # the process dies mid-write
        raise OSError("No space left on device")

    monkeypatch.setattr(_checkpoint.torch, "save", torn_save)
    with pytest.raises(OSError, match="No space left"):
        build().train(**SETTINGS, checkpoint_dir=tmp_path, resume=True)
    monkeypatch.setattr(_checkpoint.torch, "save", real_save)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]
    assert checkpoint_epoch(tmp_path) == 1


class _Payload:
    """Unpickling this object would create a marker file (standing for arbitrary code)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_checkpoint_with_a_pickle_payload_is_refused_unexecuted(tmp_path, writer):
    build().train(**{**SETTINGS, "max_epochs": 1}, checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    marker = tmp_path / "payload-ran"
    state["optimizer"] = _Payload(str(marker))
    with open(tmp_path / CHECKPOINT_FILE, "wb") as fh:
        (torch.save if writer == "torch.save" else pickle.dump)(state, fh)
    with pytest.raises(pickle.UnpicklingError, match="refused unread"):
        build().train(**SETTINGS, checkpoint_dir=tmp_path, resume=True)
    assert not marker.exists()


def test_checkpoint_from_a_newer_mmaavi_or_corrupt_is_refused(tmp_path):
    build().train(**{**SETTINGS, "max_epochs": 1}, checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    state["version"] = 99
    torch.save(state, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ValueError, match=r"checkpoint format 99.*Upgrade mmaavi"):
        build().train(**SETTINGS, checkpoint_dir=tmp_path, resume=True)
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((ValueError, pickle.UnpicklingError), match="checkpoint|refused"):
            build().train(**SETTINGS, checkpoint_dir=tmp_path, resume=True)


def test_cli_fit_passes_the_checkpoint_options(monkeypatch, tmp_path):
    from mmaavi.cli import main

    seen = {}

    class Stop(Exception):
        pass

    def train(self, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(mmaavi.MMAAVI, "train", train)
    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(Stop):
        main(["demo", "--out", str(tmp_path / "out"), "--checkpoint-dir", ckpt, "--resume"])
    assert seen["checkpoint_dir"] == ckpt and seen["resume"] is True
