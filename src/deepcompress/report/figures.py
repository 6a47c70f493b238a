"""Small PNG figures for study folders: one size and resolution everywhere, so the report stays light."""

from __future__ import annotations

from pathlib import Path

from .. import atomic

WIDTH_IN, HEIGHT_IN, DPI = 6.4, 3.4, 90


def new_figure(width_in: float = WIDTH_IN, height_in: float = HEIGHT_IN):
    """A matplotlib (figure, axes) drawn off screen (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width_in, height_in))


def save_png(fig, path: str | Path) -> Path:
    """Write `fig` as a PNG at `path` atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)
    return path
