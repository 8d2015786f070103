"""Plot helpers shared by the chapters: seed bands, stage markers, heatmaps."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

STAGE_COLORS = {"I": "#f2f2f2", "II": "#e3ecf7", "III": "#f7ede3"}


def setup():
    """One look for every figure of the book."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "figure.figsize": (7, 3.6),
                         "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9})


def seed_band(ax, wide: pd.DataFrame, label: str | None = None, color=None, logy: bool = False, lw=1.8):
    """Median over seeds (columns) as a line, min-max over seeds as a band; index is the x-axis."""
    x = wide.index.to_numpy(dtype=float)
    v = wide.to_numpy(dtype=float)
    med = np.nanmedian(v, axis=1)
    line, = ax.plot(x, med, label=label, color=color, lw=lw)
    ax.fill_between(x, np.nanmin(v, axis=1), np.nanmax(v, axis=1), color=line.get_color(), alpha=0.2, lw=0)
    if logy:
        ax.set_yscale("log")
    return line


def stage_spans(ax, cfg):
    """Shade Stage I / II / III (three-stage schedule) behind a curve over steps."""
    if getattr(cfg, "schedule", None) != "three_stage":
        return
    for name, (a, b) in {"I": (0, cfg.T1), "II": (cfg.T1, cfg.T2), "III": (cfg.T2, cfg.T)}.items():
        if b > a:
            ax.axvspan(a, b, color=STAGE_COLORS[name], zorder=0)
            ax.text((a + b) / 2, 1.0, f"Stage {name}", transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=8, color="0.35")


def heatmap(ax, M, xlabels, ylabels, title=None, cmap="viridis", vmin=None, vmax=None, annot=False, cbar=True):
    sns.heatmap(np.asarray(M, dtype=float), ax=ax, xticklabels=xlabels, yticklabels=ylabels, cmap=cmap,
                vmin=vmin, vmax=vmax, annot=annot, fmt=".2f", cbar=cbar, square=False)
    if title:
        ax.set_title(title)
    return ax
