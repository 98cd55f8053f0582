"""torch's matrix products reach torch's own BLAS, in Python and in a process started by R.

In a process started by R, R's BLAS (``libblas.so.3``, needed by libR.so) is in the global
symbol scope before Python starts, and torch's calls to ``sgemm_`` bound to it until
``import mmaavi`` loaded torch with RTLD_DEEPBIND (mmaavi._blas). The R tests run Rscript with
reticulate (not the R package: this needs no R CMD INSTALL) and check two things there: which
library ``libtorch_cpu.so``'s GOT sends ``sgemm_`` to, and that a float32 product equals this
process's bit for bit. The controls show the check fails when torch does use another BLAS.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mmaavi import _blas

#: a float32 product that a reference BLAS and MKL round differently
PRODUCT = textwrap.dedent(
    """
    import torch
    g = torch.Generator().manual_seed(0)
    a = torch.randn(257, 129, generator=g)
    b = torch.randn(129, 65, generator=g)
    product = (a @ b).numpy().tobytes().hex()
    """
)
REPORT = textwrap.dedent(
    """
    import json, warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        {imports}
    from mmaavi import _blas
    binding = _blas.torch_blas()
    seen = _blas.global_definition("sgemm_")
    {product}
    report = json.dumps({{
        "library": binding.library, "own": binding.own, "note": binding.note,
        "global_sgemm": _blas._library_of(seen) if seen else None, "product": product,
        "warnings": [str(w.message) for w in caught if str(w.message).startswith("mmaavi")],
    }})
    """
)


def _report(imports: str) -> str:
    """REPORT with ``imports`` (lines) run first, inside the warnings catcher."""
    return REPORT.format(imports=imports.replace("\n", "\n    "), product=PRODUCT)


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


def _product_here() -> str:
    scope: dict = {}
    exec(PRODUCT, scope)  # noqa: S102  (our own constant)
    return scope["product"]


def _in_r(imports: str) -> dict:
    """REPORT run by reticulate in an Rscript process, with this interpreter."""
    if shutil.which("Rscript") is None:
        _unavailable("Rscript is not on PATH (install r-base-core)")
    code = _report(imports)
    script = (
        f"Sys.setenv(RETICULATE_PYTHON = {json.dumps(sys.executable)})\n"
        "if (!requireNamespace('reticulate', quietly = TRUE)) quit(status = 3)\n"
        f"reticulate::py_run_string({json.dumps(code)})\n"
        "cat('REPORT', reticulate::py_eval('report'), '\\n', sep = '')\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("LD_PRELOAD", None)
    run = subprocess.run(
        ["Rscript", "--vanilla", "-e", script], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    if run.returncode == 3:
        _unavailable("R has no reticulate (apt-get install r-cran-reticulate)")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    line = [x for x in run.stdout.splitlines() if x.startswith("REPORT")][-1]
    return json.loads(line[len("REPORT") :])


def test_torch_uses_its_own_blas_in_python():
    binding = _blas.torch_blas()
    assert binding.own, binding
    assert binding.library.endswith("libtorch_cpu.so")
    seen = _blas.global_definition("sgemm_")
    # plain Python: nothing else defines sgemm_ globally (pytest may hold rpy2's R, locally)
    assert seen is None or _blas._library_of(seen) == binding.library


def test_torch_uses_its_own_blas_in_an_r_process():
    report = _in_r("import mmaavi")
    # the hazard is there: R's BLAS defines sgemm_ in the global scope of the R process
    assert report["global_sgemm"] and "libtorch_cpu" not in report["global_sgemm"], report
    assert report["own"], report
    assert report["library"].endswith("libtorch_cpu.so")
    assert "RTLD_DEEPBIND" in report["note"] and not report["warnings"]
    assert report["product"] == _product_here()


def test_torch_imported_before_mmaavi_in_r_uses_r_blas_and_is_reported():
    # control: the same checks fail when torch binds to R's BLAS
    report = _in_r("import torch\nimport mmaavi")
    assert not report["own"] and report["library"] == report["global_sgemm"], report
    assert report["product"] != _product_here()
    assert any("imported before mmaavi" in w for w in report["warnings"]), report


def test_deep_binding_refused_where_it_would_bypass_interposed_symbols():
    # Debian's python3.11 holds copies of stdout/stderr/environ (copy relocations): with a BLAS
    # preloaded, mmaavi must not deep-bind torch, and says so
    blas = ctypes.util.find_library("blas")
    if blas is None:
        pytest.skip("no system libblas to preload")
    code = _report("import mmaavi") + "\nprint('REPORT' + report)\n"
    env = dict(os.environ, LD_PRELOAD=blas, OMP_NUM_THREADS="1")
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.split("REPORT", 1)[1])
    if not _blas.interposition_problems():  # the same executable as the child's
        pytest.skip("this Python interposes none of the guarded symbols")
    assert not report["own"] and "libblas" in report["library"], report
    assert any("did not load torch with RTLD_DEEPBIND" in w for w in report["warnings"])


def test_got_reading_finds_the_relocations_of_sgemm():
    lib = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    slots, value = _blas._got_slots(lib, "sgemm_")
    assert slots and value
    assert _blas._got_slots(lib, "no_such_symbol_") == ([], 0)
    assert np.all(np.asarray(slots) > 0)
