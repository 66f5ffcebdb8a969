"""Pictures: sample grids (torchvision), loss curves and confusion matrices (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from .fileio import atomic_path


def _mpl():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_grid(path: str | Path, columns: list[torch.Tensor], pad: int = 2) -> None:
    """Save rows of images; `columns` is a list of N x 3 x H x W tensors in [0, 1] (masks may be N x 1)."""
    with atomic_path(path) as tmp:
        save_image(grid_picture(columns, pad), str(tmp), format="png")


def grid_picture(columns: list[torch.Tensor], pad: int = 2) -> torch.Tensor:
    """The 3 x H x W picture save_grid writes (TensorBoard shows the same one)."""
    cols = [c.expand(-1, 3, -1, -1) if c.shape[1] == 1 else c for c in columns]
    size = cols[0].shape[-1]
    cols = [F.interpolate(c, size=(size, size), mode="nearest") if c.shape[-1] != size else c for c in cols]
    n = cols[0].shape[0]
    stacked = torch.stack(cols, 1).reshape(n * len(cols), 3, size, size)
    grid = make_grid(stacked.float().cpu(), nrow=len(cols), padding=pad, pad_value=1.0)
    scale = max(1, 64 // size)  # small images get blown up so a person can see them
    if scale > 1:
        grid = F.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    return grid


METRICS_DAMAGED = "the run's metrics record is damaged: delete that line, or --force to start the run over"


def read_metrics(path: str | Path, lines: bool = False) -> list:
    """metrics.jsonl's rows, checked (chimeramix/records.py); with `lines`, (text, row) pairs."""
    from . import records as R

    p = Path(path)
    if not p.is_file():
        return []
    rows = R.read_lines(p, R.METRICS_FIELDS, R.METRICS_FIELDS.keys(), METRICS_DAMAGED)
    return rows if lines else [row for _, row in rows]


def save_loss_curves(path: str | Path, rows: list[dict], title: str = "") -> None:
    """One panel per loss, x = step, with a running mean over the noisy per-step values."""
    if not rows:
        return
    plt = _mpl()
    keys = [k for k in rows[0] if k != "step"]
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    window = max(1, len(rows) // 50)
    for ax, k in zip(axes[0], keys):
        v = torch.tensor([r[k] for r in rows], dtype=torch.float64)
        ax.plot(steps, v.numpy(), lw=0.5, alpha=0.35, color="tab:blue")
        if window > 1 and len(v) >= window:
            smooth = v.unfold(0, window, 1).mean(1).numpy()
            ax.plot(steps[window - 1:], smooth, lw=1.5, color="tab:blue")
        ax.set_title(k)
        ax.set_xlabel("step")
        if k in ("rec", "g", "lap", "loss") and (v > 0).all():
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    # fixed margins: tight_layout costs about a second per figure, which adds up over many runs and tests
    fig.subplots_adjust(left=0.08 / len(keys) * 3, right=0.98, bottom=0.17, top=0.8, wspace=0.35)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def save_confusion(path: str | Path, matrix: list[list[int]], classes: list[str], title: str = "") -> None:
    """Row-normalised confusion matrix (rows: true class) with counts in the cells when they fit."""
    plt = _mpl()
    m = torch.tensor(matrix, dtype=torch.float64)
    norm = m / m.sum(1, keepdim=True).clamp_min(1)
    k = len(classes)
    side = min(2 + 0.45 * k, 14)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if k <= 20:
        ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        for i in range(k):
            for j in range(k):
                if m[i, j] > 0:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.subplots_adjust(left=0.2, bottom=0.2, right=0.95, top=0.92)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def save_results_plot(path: str | Path, rows, title: str = "") -> None:
    """Mean test accuracy per method with the std over seeds as error bars (none for one seed), each seed as a dot."""
    import textwrap

    plt = _mpl()
    n = len(rows)
    height = 0.42 * n + 1.4
    longest = max(len(r.method) for r in rows)
    fig, ax = plt.subplots(figsize=(5.5 + 0.07 * longest, height))
    ys = list(range(n))[::-1]
    for y, r in zip(ys, rows):
        colour = "tab:orange" if r.method.startswith("ChimeraMix") else "tab:blue"
        ax.barh(y, r.mean, xerr=r.std, color=colour, alpha=0.55, capsize=3, height=0.7)
        ax.scatter(r.accuracies, [y] * len(r.accuracies), s=10, color="black", zorder=3)
        # the figure beside the axes, so it never collides with bars or dots
        spread = f"{r.std:.1f}" if r.std is not None else "n/a"
        ax.text(1.02, y, f"{r.mean:.1f} ± {spread}", va="center", fontsize=8, transform=ax.get_yaxis_transform())
    ax.set_yticks(ys, [r.method for r in rows], fontsize=8)
    ax.set_ylim(-0.6, n - 0.4)
    lo = min(min(r.accuracies) for r in rows)
    hi = max(max(r.accuracies + [r.mean + (r.std or 0)]) for r in rows)
    ax.set_xlim(max(0.0, lo - 3), min(100.0, hi + 2))
    ax.set_xlabel("test accuracy (%)")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=8)
    width = fig.get_size_inches()[0]
    fig.subplots_adjust(left=(0.25 + 0.075 * longest) / width, right=1 - 1.0 / width, bottom=0.75 / height,
                        top=1 - (0.65 if title else 0.3) / height)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
