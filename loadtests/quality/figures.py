"""What every plot of docs/dispatch-quality.md shares: matplotlib without a display, a light
grid with a legend only where something was drawn, and the PNG written where the page links."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported late: only rendering needs it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def finish(ax: Any) -> None:
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no data, no legend (matplotlib would warn)
        ax.legend(fontsize=8)


def save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    pyplot().close(fig)
