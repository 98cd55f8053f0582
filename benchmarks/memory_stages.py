"""Resident memory of one mmaavi run stage by stage (issue 6's memory target).

Loads a prepared ``bench.py`` task the way the benchmark's mmaavi runner does, then prints the
process's current and peak RSS (``VmRSS`` / ``VmHWM`` from ``/proc/self/status``) after the
imports, the mosaic and guidance graph, the model, training and encoding. One torch thread.

    .venv/bin/python benchmarks/bench.py prepare --tasks snare_mosaic
    .venv/bin/python benchmarks/memory_stages.py --task snare_mosaic --max-epochs 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _memory() -> str:
    """Current and peak resident memory of this process (Linux)."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            values[key] = int(value.split()[0]) / 1e6  # kB -> GB
    return f"RSS {values['VmRSS']:.2f} GB, peak {values['VmHWM']:.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="snare_mosaic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import mmaavi

    sys.path.insert(0, str(HERE / "methods"))
    from mmaavi_default import load_mosaic

    print("imports:", _memory(), flush=True)
    task_dir = HERE / "work" / "tasks" / args.task
    if not (task_dir / "task.json").exists():
        sys.exit(f"task {args.task} is not prepared: run `bench.py prepare --tasks {args.task}`")
    _, cells, mdata = load_mosaic(task_dir)
    print("mosaic + guidance graph:", _memory(), flush=True)
    model = mmaavi.MMAAVI(mdata, batch_key="batch", n_components=cells["label"].nunique())
    weights = sum(p.numel() for p in model.module.parameters())
    print(f"model ({weights / 1e6:.1f}M weights):", _memory(), flush=True)
    model.train(seed=args.seed, progress="none", max_epochs=args.max_epochs)
    print(f"training ({args.max_epochs} epochs):", _memory(), flush=True)
    model.get_latent_representation()
    print("encoding:", _memory(), flush=True)


if __name__ == "__main__":
    main()
