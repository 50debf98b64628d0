"""Pictures: the data set (more in the audit issue: decision regions, network diagrams)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

CLASS_COLOURS = ("#1f77b4", "#d62728")


def plot_data(X: np.ndarray, y: np.ndarray, path: str | None = None, ax=None, s: float = 0.5):
    """Scatter the two classes; save to ``path`` (format from its suffix) when given."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    for c in (0, 1):
        sel = y == c
        ax.scatter(X[sel, 0], X[sel, 1], s=s, c=CLASS_COLOURS[c], label=f"class {c}", linewidths=0)
    ax.set_aspect("equal")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.legend(loc="upper right", markerscale=10, fontsize=8)
    ax.set_title(f"Cubist Spiral ({len(X)} points)")
    if own and path:
        ax.figure.savefig(path, bbox_inches="tight")
        plt.close(ax.figure)
    return ax
