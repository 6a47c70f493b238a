"""The AVX-512 VNNI and VBMI kernels give the same integers as the numpy reference when their intrinsics are
SIMDe's portable implementations (tests/simde_build.py), so machines without AVX-512 check them too: the
integer layout tests of test_runtime_int.py run again with that build loaded, on every path it offers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepcompress.runtime import intkernels
from simde_build import build, simde_include

TESTS = Path(__file__).resolve().parent
INCLUDE = simde_include()
pytestmark = [
    pytest.mark.skipif("avx2" not in intkernels.available_paths(), reason="the emulated build needs AVX2 here"),
    pytest.mark.skipif(INCLUDE is None, reason="no SIMDe headers (pip install simde-py, or apt install libsimde-dev)"),
]


@pytest.fixture(scope="module")
def emulated_env(tmp_path_factory):
    try:
        lib = build(tmp_path_factory.mktemp("simde") / "lut_emulated.so", INCLUDE)
    except FileNotFoundError as exc:
        pytest.skip(f"Python's C compiler is not installed ({exc.filename})")
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"the SIMDe build of the C kernels failed:\n{exc.stderr[-3000:]}")
    return {**os.environ, intkernels.SIMD_LIBRARY_ENV: str(lib)}


def _python(env, *args, timeout=900):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=TESTS.parent,
                          timeout=timeout)


def test_the_emulated_build_offers_the_avx512_paths(emulated_env):
    out = _python(emulated_env, "-c", "from deepcompress.runtime import intkernels as k; print(k.available_paths())")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "('portable', 'avx2', 'vnni', 'vbmi')"


def test_every_layout_on_the_avx512_paths_equals_the_numpy_reference(emulated_env):
    out = _python(emulated_env, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / "test_runtime_int.py"),
                  str(TESTS / "test_runtime_packed6.py"), "-k", "numpy_reference or integer_modes")
    assert out.returncode == 0, out.stdout[-3000:]
    assert " passed" in out.stdout and " failed" not in out.stdout
