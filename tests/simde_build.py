"""Builds the runtime's C kernels with their AVX-512 functions on SIMDe's portable intrinsics (a test build;
pip never builds this), so tests can run the 'vnni' dispatch path on a CPU without AVX-512."""

from __future__ import annotations

import shlex
import subprocess
import sysconfig
from pathlib import Path

SOURCES = [Path(__file__).resolve().parent.parent / "src" / "deepcompress" / "runtime" / name
           for name in ("_lut.c", "_spmm.c", "_csc8.c")]


def simde_include() -> str | None:
    """The folder holding simde/x86/avx512.h: the simde-py package's, or Debian's libsimde-dev; None if neither."""
    try:
        import simde_py
    except ImportError:
        simde_py = None
    candidates = ([simde_py.get_include()] if simde_py is not None else []) + ["/usr/include"]
    return next((c for c in candidates if (Path(c) / "simde" / "x86" / "avx512.h").is_file()), None)


def build(out: Path, include: str) -> Path:
    """Compile SOURCES into the shared library `out` with DC_EMULATE_AVX512; CalledProcessError on failure."""
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    flags = ["-O2", "-std=c11", "-ffp-contract=off", "-mavx2", "-mfma", "-fPIC", "-shared", "-DDC_EMULATE_AVX512",
             f"-I{include}", f"-I{sysconfig.get_paths()['include']}"]
    subprocess.run([*cc, *flags, *map(str, SOURCES), "-o", str(out)], check=True, capture_output=True, text=True)
    return out
