"""The study's figures, drawn from finished runs (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from training.study import RunRecord  # noqa: E402


def _curves(runs: list[RunRecord], variant: str) -> pd.DataFrame:
    frames = [pd.DataFrame(r.log).assign(seed=r.seed) for r in runs if r.variant == variant]
    return pd.concat(frames, ignore_index=True)


def learning_curves(
    runs: list[RunRecord], variant: str, shift_sets: list[str], path: Path, title: str
) -> None:
    """Loss and accuracy per epoch: train and ID validation (mean over seeds, min-max band),
    and each shift set's accuracy as a thin line."""
    log = _curves(runs, variant)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for column, style in (("train", "-"), ("val", "-")):
        for ax, metric in ((ax_loss, "loss"), (ax_acc, "acc")):
            stats = log.groupby("epoch")[f"{column}_{metric}"].agg(["mean", "min", "max"])
            ax.plot(stats.index, stats["mean"], style, lw=2, label=f"{column} (ID)")
            ax.fill_between(stats.index, stats["min"], stats["max"], alpha=0.2)
    for name in shift_sets:
        stats = log.groupby("epoch")[f"{name}_acc"].mean()
        ax_acc.plot(stats.index, stats.values, "--", lw=1, label=name)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    ax_acc.legend(fontsize=7, loc="lower right")
    seeds = log["seed"].nunique()
    fig.suptitle(f"{title} ({seeds} seed{'s' if seeds > 1 else ''}; band = min-max over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell_text(share: float) -> str:
    """A share as ".97", or "1" once it rounds to 1.00."""
    text = f"{share:.2f}"
    return "1" if text == "1.00" else text[1:]


def confusion_matrices(
    runs: list[RunRecord], sets: list[str], labels: list[str], path: Path
) -> None:
    """Row-normalised confusion matrices (summed over seeds), baseline vs research."""
    variants = [v for v in ("baseline", "research") if any(r.variant == v for r in runs)]
    fig, axes = plt.subplots(
        len(variants), len(sets), figsize=(3.1 * len(sets), 3.6 * len(variants)), squeeze=False
    )
    for row, variant in enumerate(variants):
        for col, name in enumerate(sets):
            matrix = sum(
                np.asarray(r.metrics[name]["confusion_matrix"])
                for r in runs
                if r.variant == variant
            )
            norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
            ax = axes[row][col]
            ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            for i, j in np.ndindex(norm.shape):
                ax.text(
                    j,
                    i,
                    _cell_text(norm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if norm[i, j] > 0.6 else "black",
                )
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
            ax.set_yticks(range(len(labels)), labels if col == 0 else [], fontsize=6)
            acc = np.trace(matrix) / matrix.sum()
            ax.set_title(f"{variant} · {name}\nacc {acc:.3f}", fontsize=8)
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("true", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def per_domain_accuracy(runs: list[RunRecord], sets: list[str], path: Path) -> None:
    """Accuracy per (set, domain) for each variant, mean over seeds."""
    rows = [
        {"variant": r.variant, "where": f"{name}:{domain}", "accuracy": acc}
        for r in runs
        for name in sets
        for domain, acc in r.metrics[name].get("per_domain_accuracy", {}).items()
    ]
    table = (
        pd.DataFrame(rows).groupby(["where", "variant"], sort=False)["accuracy"].mean().unstack()
    )
    ax = table.plot.bar(figsize=(max(8, 0.45 * len(table)), 4), width=0.8)
    ax.set(
        ylabel="accuracy (mean over seeds)", xlabel="", ylim=(0, 1.02), title="Per-domain accuracy"
    )
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=110)
    plt.close(ax.figure)


def per_seed_accuracy(runs: list[RunRecord], sets: list[str], path: Path) -> None:
    """Each seed's accuracy on each set, one marker per seed."""
    variants = list(dict.fromkeys(r.variant for r in runs))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(variants)
    for k, variant in enumerate(variants):
        for i, name in enumerate(sets):
            values = [r.metrics[name]["accuracy"] for r in runs if r.variant == variant]
            ax.scatter(
                np.full(len(values), i + (k - (len(variants) - 1) / 2) * width),
                values,
                s=14,
                color=f"C{k}",
                label=variant if i == 0 else None,
            )
    ax.set_xticks(range(len(sets)), sets)
    ax.set(ylabel="accuracy", ylim=(0, 1.02), title="Per-seed accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
