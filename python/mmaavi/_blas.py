"""Import torch so that its matrix products use torch's own BLAS, also in a process started by R.

Why this exists. ``libtorch_cpu.so`` carries MKL and exports its Fortran BLAS symbols
(``sgemm_``, ``dgemm_``, ``sgemv_``, ... and ``xerbla_``), and torch's own GEMM calls ``sgemm_``
through the PLT, so the dynamic linker may bind that call to another library's ``sgemm_``. The
lookup for a library loaded with ``dlopen()`` searches the *global scope* (the program and the
libraries it was started with) before the library's own dependencies. In a process started by R
the program is R, and ``libR.so`` needs ``libblas.so.3``: R's BLAS (on Debian the reference BLAS
unless another is selected with update-alternatives) is in the global scope before Python even
starts, so every BLAS call of torch went to R's BLAS (``LD_DEBUG=bindings``: "binding file
libtorch_cpu.so to libblas.so.3: normal symbol `sgemm_'", 29 BLAS symbols in all, and
``xerbla_`` to libR.so). float32 results then differ from the same run in Python, and training
on the reference BLAS is several times slower. In a plain Python process no library of the global
scope defines ``sgemm_`` (NumPy's OpenBLAS uses suffixed names), and torch binds to itself.

The fix. When the global scope already defines ``sgemm_`` and torch is not imported yet,
:func:`import_torch` imports torch with ``RTLD_DEEPBIND`` in the ``dlopen`` flags, which puts
each library's own dependency tree ahead of the global scope for its symbol lookups. Measured in
an R process (``LD_DEBUG=bindings``, every binding of every torch library), this changes exactly
the bindings by which R differed from Python: the BLAS symbols and ``xerbla_`` now go to
``libtorch_cpu.so``, and ~100 C++ runtime functions that ``libtorch_cpu.so`` carries itself
(``std::filesystem``, linked in statically) go to its own copies, as they do in Python.

When it is not safe. ``RTLD_DEEPBIND`` also bypasses deliberate interposition: a malloc
replacement loaded before torch (jemalloc, tcmalloc, a sanitizer) would be skipped by torch but
not by the rest of the process, and data that the program holds as copy relocations
(``stdout``, ``environ``: Debian's non-PIE ``python3.11`` does) would be read from the C
library's stale originals. So the deep binding is used only when every such symbol that the
process defines globally is the C library's (or libstdc++'s) own definition (true for R, whose
executable is a small PIE with no copy relocations); otherwise torch is imported as usual and a
warning says that its matrix products use the other BLAS. :func:`torch_blas` reports, from
``libtorch_cpu.so``'s GOT, which library torch's ``sgemm_`` calls really reach.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "BlasBinding",
    "global_definition",
    "import_torch",
    "interposition_problems",
    "torch_blas",
]

#: the symbol whose binding decides where torch's float32 matrix products go
PROBE = "sgemm_"
#: symbols that RTLD_DEEPBIND would take from the C library itself instead of the global scope:
#: the deep binding is safe only where the global scope holds these libraries' own definitions
_GUARDED = {
    "libc.so.6": (
        "malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc", "memalign",
        "valloc", "pvalloc", "malloc_usable_size", "environ", "__environ", "stdin", "stdout",
        "stderr", "__libc_single_threaded",
    ),
    "libstdc++.so.6": (
        "_Znwm", "_Znam", "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZnwmSt11align_val_t",
        "_ZdlPvSt11align_val_t", "_ZSt4cout", "_ZSt4cerr", "_ZSt4clog", "_ZSt3cin",
    ),
}  # fmt: skip


#: glibc Linux: where one flat symbol scope lets R's BLAS capture torch's calls, and where
#: RTLD_DEEPBIND, RTLD_NOLOAD and dladdr() exist (macOS binds by two-level namespaces)
def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):
        return False


_SUPPORTED = (
    sys.platform.startswith("linux")
    and hasattr(os, "RTLD_DEEPBIND")
    and hasattr(os, "RTLD_NOLOAD")
    and _glibc()
)
#: what :func:`import_torch` did, for :func:`torch_blas` and ``mmaavi_python_info()``
_state: dict[str, object] = {"deepbind": False, "reason": "not imported through mmaavi"}


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


@functools.cache
def _libdl():
    """dlopen/dlsym/dladdr (glibc >= 2.34 has them in libc; older ones in libdl), typed."""
    lib = ctypes.CDLL(None)  # dlopen(NULL): the program and the global scope
    for name in ("dlsym", "dladdr", "dlopen"):
        if not hasattr(lib, name):
            lib = ctypes.CDLL("libdl.so.2")
            break
    lib.dlsym.restype = ctypes.c_void_p
    lib.dlsym.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
    lib.dladdr.restype = ctypes.c_int
    lib.dladdr.argtypes = (ctypes.c_void_p, ctypes.POINTER(_DlInfo))
    lib.dlopen.restype = ctypes.c_void_p
    lib.dlopen.argtypes = (ctypes.c_char_p, ctypes.c_int)
    return lib


def _global_handle() -> int:
    return ctypes.CDLL(None)._handle


def global_definition(symbol: str) -> int | None:
    """Address of ``symbol`` in the global scope (the program, the libraries it started with and
    those opened with RTLD_GLOBAL): what a library loaded without RTLD_DEEPBIND binds it to."""
    return _libdl().dlsym(_global_handle(), symbol.encode()) or None


def _loaded(library: str) -> int | None:
    """Handle of an already loaded library (by soname or path), None if it is not loaded."""
    return _libdl().dlopen(library.encode(), os.RTLD_LAZY | os.RTLD_NOLOAD) or None


def _own_definition(handle: int, symbol: str) -> int | None:
    return _libdl().dlsym(handle, symbol.encode()) or None


def _library_of(address: int) -> str | None:
    """Path of the loaded object that holds ``address``."""
    info = _DlInfo()
    if not address or not _libdl().dladdr(address, ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.fsdecode(info.dli_fname)


def interposition_problems() -> list[str]:
    """The guarded symbols whose global definition is not their library's own (a malloc
    replacement, a copy relocation in the program): RTLD_DEEPBIND would bypass these."""
    problems = []
    for library, symbols in _GUARDED.items():
        handle = _loaded(library)
        if handle is None:
            continue
        for symbol in symbols:
            seen = global_definition(symbol)
            own = _own_definition(handle, symbol)
            if seen is not None and own is not None and seen != own:
                problems.append(f"{symbol} (from {_library_of(seen) or 'the program'})")
    return problems


def import_torch():
    """``import torch`` so that torch's BLAS calls reach torch's own BLAS (see the module text).

    Called by ``import mmaavi`` before anything imports torch. Where no other library of the
    global scope defines ``sgemm_`` (plain Python) this is a plain ``import torch``.
    """
    if not _SUPPORTED:
        _state.update(deepbind=False, reason="symbol binding is only examined on glibc Linux")
        import torch

        return torch
    foreign = global_definition(PROBE)
    if foreign is not None and os.path.basename(_library_of(foreign) or "") == "libtorch_cpu.so":
        foreign = None  # torch's own, preloaded (LD_PRELOAD=.../libtorch_cpu.so)
    if "torch" in sys.modules:
        _state.update(deepbind=False, reason="torch was imported before mmaavi")
        if foreign is not None and not (binding := torch_blas()).own:
            warnings.warn(
                f"mmaavi: torch was imported before mmaavi in a process that already holds a "
                f"BLAS, and its matrix products go to {binding.library} instead of torch's own "
                f"MKL, which changes float32 results (compared with plain Python) and may be "
                f"slower. Import mmaavi before torch (in R: call mmaavi functions before "
                f"importing torch through reticulate) in a new session.",
                RuntimeWarning,
                stacklevel=3,
            )
        return sys.modules["torch"]
    if foreign is None:
        _state.update(deepbind=False, reason=f"no other library of the process defines {PROBE}")
        import torch

        return torch
    problems = interposition_problems()
    if problems:
        _state.update(deepbind=False, reason="interposed symbols: " + ", ".join(problems))
        warnings.warn(
            f"mmaavi: this process already holds a BLAS ({_library_of(foreign)}), so torch's "
            f"matrix products go to it instead of torch's own MKL, which changes float32 "
            f"results (compared with plain Python) and may be slower. mmaavi did not load torch "
            f"with RTLD_DEEPBIND (which would fix that), because the process defines these "
            f"symbols elsewhere than in their own library (an allocator replacement, copies in "
            f"the program) and the deep binding would bypass them: {', '.join(problems)}.",
            RuntimeWarning,
            stacklevel=3,
        )
        import torch

        return torch
    # NumPy is imported (at the top of this module): its extensions stay out of the deep binding
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        import torch
    finally:
        sys.setdlopenflags(flags)
    _state.update(
        deepbind=True,
        reason=f"{_library_of(foreign)} defines {PROBE} in this process: torch loaded with "
        "RTLD_DEEPBIND",
    )
    return torch


# ---------------------------------------------------------------------------- diagnosis

_EM_X86_64, _EM_AARCH64 = 62, 183
#: relocation types that fill a GOT slot with a symbol's address (JUMP_SLOT, GLOB_DAT)
_GOT_TYPES = {_EM_X86_64: (7, 6), _EM_AARCH64: (1026, 1025)}
_SHDR = np.dtype(
    [
        ("name", "<u4"), ("type", "<u4"), ("flags", "<u8"), ("addr", "<u8"), ("offset", "<u8"),
        ("size", "<u8"), ("link", "<u4"), ("info", "<u4"), ("addralign", "<u8"),
        ("entsize", "<u8"),
    ]
)  # fmt: skip
_SYM = np.dtype(
    [("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
     ("size", "<u8")]
)  # fmt: skip
_RELA = np.dtype([("offset", "<u8"), ("info", "<u8"), ("addend", "<i8")])
_SHT_RELA, _SHT_DYNSYM = 4, 11


def _got_slots(path: Path, symbol: str) -> tuple[list[int], int] | None:
    """GOT slots (offsets from the load bias) that ``path`` fills with ``symbol``'s address, and
    the symbol's own value in ``path`` (0 if it does not define it); None for other ELF kinds."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as image:
        if image[:4] != b"\x7fELF" or image[4] != 2 or image[5] != 1:
            return None  # 64-bit little-endian only
        machine = int.from_bytes(image[18:20], "little")
        if machine not in _GOT_TYPES:
            return None
        shoff = int.from_bytes(image[0x28:0x30], "little")
        shnum = int.from_bytes(image[0x3C:0x3E], "little")
        sections = np.frombuffer(image, _SHDR, count=shnum, offset=shoff).copy()
        found = np.flatnonzero(sections["type"] == _SHT_DYNSYM)
        if not len(found):
            return None
        dynsym = sections[found[0]]
        strings = sections[dynsym["link"]]
        start, end = int(strings["offset"]), int(strings["offset"] + strings["size"])
        needle = symbol.encode() + b"\0"
        names, at = [], image.find(needle, start, end)
        while at >= 0:  # every string that reads `symbol` (linkers merge string tails)
            names.append(at - start)
            at = image.find(needle, at + 1, end)
        symbols = _table(image, _SYM, dynsym)
        index = np.flatnonzero(np.isin(symbols["name"], names))
        defined = [int(symbols["value"][i]) for i in index if symbols["shndx"][i] != 0]
        kinds = np.asarray(_GOT_TYPES[machine], np.uint64)
        slots: list[int] = []
        for section in sections:
            if section["type"] != _SHT_RELA or section["link"] != found[0] or not len(index):
                continue
            rela = _table(image, _RELA, section)
            mine = np.isin(rela["info"] >> np.uint64(32), index.astype(np.uint64))
            mine &= np.isin(rela["info"] & np.uint64(0xFFFFFFFF), kinds)
            slots.extend(int(o) for o in rela["offset"][mine])
    return slots, (defined[0] if defined else 0)


def _table(image: mmap.mmap, dtype: np.dtype, section) -> np.ndarray:
    """A section's entries, copied (no view may outlive the mapping)."""
    count = int(section["size"]) // dtype.itemsize
    return np.frombuffer(image, dtype, count=count, offset=int(section["offset"])).copy()


@dataclass(frozen=True)
class BlasBinding:
    """Where torch's ``sgemm_`` calls go (see :func:`torch_blas`)."""

    #: the loaded library that the calls reach (None: not found out)
    library: str | None
    #: True when that is torch's own BLAS (libtorch_cpu.so)
    own: bool
    #: how torch was loaded, or why the binding could not be read
    note: str

    def __str__(self) -> str:
        if self.library is None:
            return f"unknown ({self.note})"
        where = "torch's own" if self.own else "not torch's own: float32 results differ"
        return f"{self.library} ({where})"


def torch_blas() -> BlasBinding:
    """The library that torch's float32 matrix products (``sgemm_``) reach in this process, read
    from ``libtorch_cpu.so``'s GOT after one small matrix product, with dladdr()."""
    import torch

    note = str(_state["reason"])
    if not _SUPPORTED:
        return BlasBinding(None, False, note)
    path = Path(torch.__file__).resolve().parent / "lib" / "libtorch_cpu.so"
    handle = _loaded(str(path)) if path.is_file() else None
    if handle is None:
        return BlasBinding(None, False, f"no loaded {path}")
    own = _own_definition(handle, PROBE)
    found = _got_slots(path, PROBE)
    if own is None or not found or not found[0] or not found[1]:
        return BlasBinding(None, False, f"{path.name} does not call its own {PROBE} via its GOT")
    slots, value = found
    a = torch.ones(64, 64)
    (a @ a).sum()  # a lazily bound slot is resolved by the first call
    bias = own - value
    targets = {ctypes.c_void_p.from_address(bias + slot).value for slot in slots}
    if targets == {own}:
        return BlasBinding(str(path), True, note)
    libraries = sorted({_library_of(t) or hex(t) for t in targets if t != own})
    return BlasBinding(", ".join(libraries), False, note)
