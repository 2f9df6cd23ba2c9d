"""pareto.png: every method's front in objective space (pairwise panels when K > 2)."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Sequence
from pathlib import Path

from pluralign.evaluation.front import STARTING_FRONTS, Front


def plot_fronts(fronts: Sequence[Front], names: Sequence[str], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(itertools.combinations(range(len(names)), 2)) or [(0, 0)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.5 * len(pairs), 4.5), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs):
        for f in fronts:
            s = f.scores
            if f.method in STARTING_FRONTS:
                label = f"{f.method} (starting model)"
                ax.scatter(s[0, i], s[0, j], marker="*", s=220, color="black", label=label, zorder=5)
                continue
            line = ax.plot(s[:, i], s[:, j], "-o", ms=4, alpha=0.8, label=f"{f.method} (HV {f.hypervolume:.2f})")[0]
            for w, x, y in zip(f.weights, s[:, i], s[:, j]):
                if w[i] in (0.0, 0.5, 1.0):
                    ax.annotate(
                        f"w={w[i]:g}",
                        (x, y),
                        fontsize=7,
                        color=line.get_color(),
                        xytext=(3, 3),
                        textcoords="offset points",
                    )
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    title = title or "Pareto fronts over the preference grid (mean score per preference)"
    fig.suptitle(textwrap.fill(title, width=55 * len(pairs)))  # a long title wraps instead of leaving the figure
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
