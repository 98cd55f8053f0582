"""``mmaavi fit`` with the atlas-scale options: --backed, --precision, --shuffle, bad input."""

from __future__ import annotations

import json

import mudata
import pandas as pd
import pytest

import mmaavi
from mmaavi.cli import main


@pytest.fixture(scope="module")
def bmmc_h5mu(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "bmmc.h5mu"
    with mudata.set_options(pull_on_update=False):
        mmaavi.datasets.bmmc_mosaic().write(path)
    return path


def test_fit_backed_reads_the_counts_from_disk(bmmc_h5mu, tmp_path):
    out = tmp_path / "run"
    argv = [
        "fit", "--h5mu", str(bmmc_h5mu), "--backed", "--n-components", "5", "--max-epochs", "1",
        "--precision", "bf16", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    emb = pd.read_csv(out / "embedding.csv", index_col=0)
    assert emb.shape == (1100, 30) and emb.notna().all().all()
    train = json.loads((out / "metrics.json").read_text())["train"]
    assert train["shuffle"] == "chunked" and train["precision"] == "bf16"
    assert train["n_epochs"] == 1


def test_fit_backed_with_a_missing_file_says_so(tmp_path):
    missing = tmp_path / "nope.h5mu"
    with pytest.raises(SystemExit, match=r"--h5mu.*nope\.h5mu: no such file"):
        main(["fit", "--h5mu", str(missing), "--backed", "--n-components", "3", "--out", "o"])
    with pytest.raises(SystemExit, match=r"--modality rna=.*nope\.h5ad: no such file"):
        main(["fit", "--modality", f"rna={tmp_path / 'nope.h5ad'}", "--backed",
              "--n-components", "3", "--out", "o"])  # fmt: skip


def test_fit_backed_refuses_rds(tmp_path):
    with pytest.raises(SystemExit, match=r"--backed reads \.h5mu / \.h5ad files on disk"):
        main(["fit", "--rds", str(tmp_path / "x.rds"), "--backed", "--n-components", "3",
              "--out", "o"])  # fmt: skip


def test_fit_cuda_without_a_gpu_is_a_clear_error(bmmc_h5mu, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match=r"device='cuda' was asked for but torch sees no CUDA"):
        main(["fit", "--h5mu", str(bmmc_h5mu), "--device", "cuda", "--n-components", "3",
              "--max-epochs", "1", "--out", str(tmp_path / "o")])  # fmt: skip
