"""Seconds per training step on the SNARE-seq mosaic (10k cells x 27k features; issue 6).

Builds the ``snare_mosaic`` task (``tasks.py``), an untrained model, and times full training
steps (minibatch assembly, ``module.loss``, backward, RMSprop step) on random minibatches of the
default size for this data set (142 cells), one torch thread, after warm-up steps. The training
loop does exactly this work per step.

Run from the repository root (about 2 minutes)::

    .venv/bin/python benchmarks/step_time.py                 # ATAC encoder input: log1p_norm
    .venv/bin/python benchmarks/step_time.py --atac-transform lsi
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tasks import snare_mosaic  # noqa: E402

import mmaavi  # noqa: E402
from mmaavi.module import LossWeights  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atac-transform", default="log1p_norm", choices=["log1p_norm", "lsi"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=142)
    args = parser.parse_args()
    task = snare_mosaic()
    transform = {"rna": "log1p_norm", "atac": args.atac_transform}
    model = mmaavi.MMAAVI(task.mdata, batch_key="batch", n_components=15, transform=transform)
    module, data = model._build_module(), model.data
    optimizer = torch.optim.RMSprop(module.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)

    def step() -> None:
        idx = np.sort(rng.choice(data.n_cells, args.batch_size, replace=False))
        out = module.loss(data.minibatch(idx), LossWeights())
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    print(
        json.dumps(
            {
                "task": "snare_mosaic",
                "atac_transform": args.atac_transform,
                "batch_size": args.batch_size,
                "seconds_per_step": round(seconds, 3),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
