"""Seconds per training step on the SNARE-seq mosaic (10k cells x 27k features) or the bundled
BMMC mosaic (1100 cells; issue 6).

Builds the ``snare_mosaic`` task (``tasks.py``) or ``mmaavi.datasets.bmmc_mosaic()`` with its hg38
guidance graph, an untrained model, and times full training steps (minibatch assembly,
``module.loss``, backward, ``FlatRMSprop`` step) on random minibatches of the default size for
the data set (train()'s rule), one torch thread, deterministic kernels as in training, after
warm-up steps: the work the training loop does per step.

Run from the repository root (SNARE about 2 minutes, BMMC seconds)::

    .venv/bin/python benchmarks/step_time.py                 # ATAC encoder input: log1p_norm
    .venv/bin/python benchmarks/step_time.py --atac-transform lsi
    .venv/bin/python benchmarks/step_time.py --task bmmc --steps 200
    .venv/bin/python benchmarks/step_time.py --input both     # wide ATAC input vs dense
    .venv/bin/python benchmarks/step_time.py --output both    # tiled decoder head vs one call

``--input both`` builds the model twice, once with the wide-input path of ``mmaavi.nn.wide``
(the default for 4096+ features) and once with every input dense as before it, and alternates
rounds of 5 steps between the two, so both see the same machine load; it reports CPU
milliseconds per step for each. ``--output both`` does the same for the decoders' hybrid output
computed in column tiles (``mmaavi.nn._hybrid_output``, the default for 4096+ features) against
its two products as single calls (same values bit for bit).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

torch.set_num_threads(1)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tasks import snare_mosaic  # noqa: E402

import mmaavi  # noqa: E402
import mmaavi.nn._hybrid_output as _hybrid  # noqa: E402
import mmaavi.nn.wide as _wide  # noqa: E402
from mmaavi.module import LossWeights  # noqa: E402
from mmaavi.train._loop import _deterministic  # noqa: E402
from mmaavi.train._optim import FlatRMSprop  # noqa: E402


@contextmanager
def _variant(kind: tuple[str, str]):
    """``(input, output)``; input ``dense``: no input counts as wide while inside (the data and
    the encoders ask ``mmaavi.nn.wide.is_wide``); output ``plain``: no decoder output is
    computed in tiles."""
    saved = _wide.WIDE_INPUT_FEATURES, _hybrid.TILED_OUTPUT_FEATURES
    if kind[0] == "dense":
        _wide.WIDE_INPUT_FEATURES = 10**9
    if kind[1] == "plain":
        _hybrid.TILED_OUTPUT_FEATURES = 10**9
    try:
        yield
    finally:
        _wide.WIDE_INPUT_FEATURES, _hybrid.TILED_OUTPUT_FEATURES = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="snare", choices=["snare", "bmmc"])
    parser.add_argument("--atac-transform", default="log1p_norm", choices=["log1p_norm", "lsi"])
    parser.add_argument("--input", default="wide", choices=["wide", "dense", "both"])
    parser.add_argument("--output", default="tiled", choices=["tiled", "plain", "both"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default: train()'s (SNARE 142, BMMC 32)"
    )
    args = parser.parse_args()
    if args.task == "snare":
        task = snare_mosaic()
        transform = {"rna": "log1p_norm", "atac": args.atac_transform}
        mdata, kwargs = task.mdata, {"batch_key": "batch", "n_components": 15}
    else:
        mdata = mmaavi.datasets.bmmc_mosaic()
        mmaavi.graph.add_guidance_graph(mdata, "hg38")
        transform = {m: args.atac_transform if m == "atac" else "log1p_norm" for m in mdata.mod}
        kwargs = {"n_components": 11}
    if args.input == "both" and args.output == "both":
        parser.error("compare either --input both or --output both, not both at once")
    inputs = ["wide", "dense"] if args.input == "both" else [args.input]
    outputs = ["tiled", "plain"] if args.output == "both" else [args.output]
    kinds = [(i, o) for i in inputs for o in outputs]
    runs = {}
    for kind in kinds:
        with _variant(kind):
            torch.manual_seed(0)
            model = mmaavi.MMAAVI(mdata, transform=transform, **kwargs)
            module = model._build_module().train()
        runs[kind] = (model.data, module, FlatRMSprop(module.parameters(), lr=2e-3))
    data = runs[kinds[0]][0]
    # the size train() picks: its rule over the cells it trains on (validation 10 %, seed 0)
    n_train = len(mmaavi.data.train_val_split(data.batch, 0.1, 0)[0])
    n_features = sum(data.n_features(m) for m in data.modalities)
    args.batch_size = args.batch_size or mmaavi.data.default_batch_size(n_train, n_features)
    rng = np.random.default_rng(0)
    # the training loop's CPU settings (deterministic kernels, no NaN fill of new tensors)
    deterministic = _deterministic(True)
    deterministic.__enter__()

    def steps(kind: tuple[str, str], n: int) -> tuple[float, float]:
        data, module, optimizer = runs[kind]
        wall, cpu = time.perf_counter(), time.process_time()
        with _variant(kind):
            for _ in range(n):
                idx = np.sort(rng.choice(data.n_cells, args.batch_size, replace=False))
                out = module.loss(data.minibatch(idx), LossWeights())
                optimizer.zero_grad()
                out.total.backward()
                optimizer.step()
        return time.perf_counter() - wall, time.process_time() - cpu

    for kind in kinds:
        steps(kind, 3)  # warm-up
    totals = {kind: [0.0, 0.0] for kind in kinds}
    done = 0
    while done < args.steps:
        n = min(5, args.steps - done)
        for kind in kinds:
            wall, cpu = steps(kind, n)
            totals[kind][0] += wall
            totals[kind][1] += cpu
        done += n
    for kind in kinds:
        wall, cpu = totals[kind]
        print(
            json.dumps(
                {
                    "task": "snare_mosaic" if args.task == "snare" else "bmmc_mosaic",
                    "atac_transform": args.atac_transform,
                    "input": kind[0],
                    "output": kind[1],
                    "batch_size": args.batch_size,
                    "seconds_per_step": round(wall / args.steps, 3),
                    "cpu_seconds_per_step": round(cpu / args.steps, 3),
                    "torch_threads": torch.get_num_threads(),
                }
            )
        )


if __name__ == "__main__":
    main()
