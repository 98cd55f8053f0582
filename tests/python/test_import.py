"""``import mmaavi`` needs no R: nothing R-related is imported at import time."""

from __future__ import annotations

import subprocess
import sys


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
