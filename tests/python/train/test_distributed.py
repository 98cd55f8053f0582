"""Data-parallel training with torchrun on CPU (gloo): two processes, one thread each.

``ddp_run.py`` (next to this file) is the training script torchrun starts; each process reports
a digest of its weights, process 0 the embedding (and, on BMMC, the integration metrics).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "ddp_run.py"
sys.path.insert(0, str(HERE.parent))


def torchrun(out: Path, data: str, options: dict, nproc: int = 2, timeout: int = 300):
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", str(SCRIPT), str(out), data, json.dumps(options),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def ranks(out: Path, n: int = 2) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(n)]


TINY = {"max_epochs": 3, "batch_size": 16}


def test_two_processes_train_one_model_and_resume_exactly(tmp_path):
    full = torchrun(tmp_path / "full", "tiny", TINY)
    assert full.returncode == 0, full.stderr[-3000:]
    r0, r1 = ranks(tmp_path / "full")
    assert r0["weights_sha256"] == r1["weights_sha256"]  # one model, held by both processes
    assert r0["train_info"]["processes"] == 2 and r0["train_info"]["n_epochs"] == 3

    # killed after epoch 2 (here: stopped there), resumed to 3: the run never interrupted
    ckpt = tmp_path / "ckpt"
    first = torchrun(tmp_path / "a", "tiny", {**TINY, "max_epochs": 2, "checkpoint_dir": str(ckpt)})
    assert first.returncode == 0, first.stderr[-3000:]
    second = torchrun(tmp_path / "b", "tiny", {**TINY, "checkpoint_dir": str(ckpt), "resume": True})
    assert second.returncode == 0, second.stderr[-3000:]
    assert ranks(tmp_path / "b")[0]["train_info"]["resumed_from_epoch"] == 2
    np.testing.assert_array_equal(
        np.load(tmp_path / "b" / "embedding.npy"), np.load(tmp_path / "full" / "embedding.npy")
    )

    # resuming with another number of processes is refused
    alone = torchrun(
        tmp_path / "c", "tiny", {**TINY, "checkpoint_dir": str(ckpt), "resume": True}, nproc=1
    )
    assert alone.returncode != 0
    assert "world_size: 2 then, 1 now" in (tmp_path / "c" / "error0.txt").read_text()


def test_more_processes_than_a_minibatch_can_share_is_refused(tmp_path):
    proc = torchrun(tmp_path / "run", "tiny", {"max_epochs": 1, "batch_size": 3})
    assert proc.returncode != 0
    message = (tmp_path / "run" / "error0.txt").read_text()
    assert "on 2 processes needs a batch_size of at least 4" in message
    assert "torchrun --nproc_per_node" in message


@pytest.mark.slow
def test_bmmc_two_processes_reach_the_single_process_floors(tmp_path):
    """Default training (early stopping) on the bundled BMMC mosaic, 2 processes x 1 thread."""
    from test_integration_quality import BMMC_FLOORS, _assert_integrates

    proc = torchrun(tmp_path, "bmmc", {}, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = ranks(tmp_path)
    assert r0["weights_sha256"] == r1["weights_sha256"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    print(r0["train_info"], metrics)
    _assert_integrates(metrics["mmaavi"], metrics["pca"], BMMC_FLOORS)


def test_bad_launch_environments_say_what_is_wrong(monkeypatch):
    import torch

    from mmaavi.train import _distributed as parallel

    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match=r"WORLD_SIZE='two': expected an integer"):
        parallel.from_environment()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = parallel.from_environment()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (1, 2, 1, False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"LOCAL_RANK=1 but this node has 1 CUDA GPU"):
        parallel.process_device(torch.device("cuda"), ctx)


def test_bf16_on_a_gpu_without_it_is_refused(monkeypatch):
    import torch

    from mmaavi.model import _resolve_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(ValueError, match=r"precision='bf16' needs a GPU with bfloat16 support"):
        _resolve_precision("bf16", torch.device("cuda"))
    assert _resolve_precision("bf16", torch.device("cpu")) == "bf16"
