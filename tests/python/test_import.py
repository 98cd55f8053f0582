"""``import mmaavi`` needs no R: nothing R-related is imported at import time; and training
imports none of torch's compiler stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_import_loads_no_r_bridge():
    code = (
        "import sys, mmaavi; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rpy2', 'anndata2ri')); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_api_is_exposed():
    import mmaavi

    for name in ("MMAAVI", "data", "datasets", "graph", "__version__"):
        assert hasattr(mmaavi, name), name
    assert callable(mmaavi.data.mosaic) and callable(mmaavi.datasets.bmmc_mosaic)


def test_training_imports_no_compiler_stack():
    """torch-geometric, torch._dynamo and sympy cost ~215 MB of resident memory and ~3.5 CPU s
    per process; nothing in import, training (with a guidance graph, deterministic mode on) or
    encoding may pull them in (torch.optim's own methods and use_deterministic_algorithms do)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import mmaavi, torch; from _mosaics import SMALL, tiny_mosaic; "
        "mdata = tiny_mosaic(); "
        "import pandas as pd; "
        "graph = pd.DataFrame({'source': [f'g{i}' for i in range(8)], "
        "'target': [f'p{i}' for i in range(8)]}); "
        "model = mmaavi.MMAAVI(mdata, batch_key='batch', graph=graph, n_components=2, **SMALL); "
        "model.train(max_epochs=2, seed=0, progress='none'); "
        "model.get_latent_representation(); "
        "assert not torch.are_deterministic_algorithms_enabled(); "
        "print(','.join(sorted({'.'.join(m.split('.')[:2]) for m in sys.modules "
        "if m.startswith(('torch_geometric', 'sympy', 'torch._dynamo', 'torch._inductor'))})))"
    )
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run(
        [sys.executable, "-c", code, here], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == ""
