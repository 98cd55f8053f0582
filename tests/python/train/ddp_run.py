"""Training script the data-parallel tests start with ``torchrun`` (not a test module).

Usage: ``torchrun --nproc_per_node=N ddp_run.py OUT {tiny,bmmc} [train options as JSON]``.
Each process writes ``OUT/rank<r>.json`` (a digest of its weights, its train_info); process 0
also writes ``OUT/embedding.npy`` and, for ``bmmc``, the integration metrics of its embedding.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))


def main() -> None:
    out, data = Path(sys.argv[1]), sys.argv[2]
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    import mmaavi

    if data == "tiny":
        from _mosaics import SMALL, tiny_mosaic

        model = mmaavi.MMAAVI(tiny_mosaic(), n_components=3, **SMALL)
    else:
        model = mmaavi.MMAAVI(mmaavi.datasets.bmmc_mosaic(), batch_key="batch", n_components=10)
    try:
        model.train(seed=0, progress="none", **options)
    except ValueError as err:  # a bad-input test reads the message
        (out / f"error{os.environ.get('RANK', '0')}.txt").write_text(str(err))
        raise SystemExit(3) from None
    rank = int(os.environ.get("RANK", "0"))
    weights = torch.cat([t.detach().flatten() for t in model.module.state_dict().values()])
    record = {
        "weights_sha256": hashlib.sha256(weights.numpy().tobytes()).hexdigest(),
        "train_info": model.train_info,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record, default=str))
    if rank == 0:
        z = model.get_latent_representation()
        np.save(out / "embedding.npy", z)
        if data == "bmmc":
            from mmaavi.metrics import integration_metrics, pca_baseline

            obs = model.mdata.obs
            labels, batches = obs["cell_type_l1"], obs["batch"]
            metrics = {
                "mmaavi": integration_metrics(z, labels, batches),
                "pca": integration_metrics(pca_baseline(model.mdata), labels, batches),
            }
            (out / "metrics.json").write_text(json.dumps(metrics))


if __name__ == "__main__":
    main()
