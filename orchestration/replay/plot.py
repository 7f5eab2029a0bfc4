"""The timeline of one replay as a PNG: drift, embedding drift and accuracy (live, estimated,
the label-free lower bound, reference), onset marked."""

from __future__ import annotations

from pathlib import Path


def plot_timeline(timeline: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = timeline["samples"]
    models = list(timeline["final"].get("models", {}))
    fig, (ax_drift, ax_emb, ax_acc) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for k, model in enumerate(models):
        color = f"C{k}"
        points = [(s["sent"], s["models"][model]) for s in samples if model in s["models"]]
        xs = [x for x, _ in points]

        def series(key: str, pts=points) -> list[float]:
            return [float("nan") if m.get(key) is None else float(m[key]) for _, m in pts]

        ax_drift.plot(xs, series("drift_share"), color=color, label=model)
        alarms = [x for x, m in points if m["dataset_drift"]]
        ax_drift.scatter(alarms, [1.02] * len(alarms), color=color, marker="|", s=60)
        ax_emb.plot(xs, series("embedding_drift"), color=color, label=model)
        ax_acc.plot(xs, series("live_accuracy"), color=color, label=f"{model} live")
        ax_acc.plot(
            xs,
            series("estimated_accuracy"),
            color=color,
            linestyle="--",
            label=f"{model} estimated",
        )
        ax_acc.plot(
            xs, series("reference_accuracy"), color=color, linestyle=":", label=f"{model} reference"
        )
        ax_acc.plot(
            xs,
            series("label_free_bound"),
            color=color,
            linestyle="-.",
            linewidth=1,
            label=f"{model} lower bound",
        )
    for ax in (ax_drift, ax_emb, ax_acc):
        ax.axvline(timeline["onset_index"], color="black", linestyle="--", linewidth=1)
    ax_drift.set(ylabel="drift share (ticks: dataset drift)", ylim=(0, 1.08))
    ax_emb.set(ylabel="embedding drift score")
    ax_acc.set(ylabel="accuracy (window)", xlabel="events sent", ylim=(0, 1.02))
    ax_drift.legend(fontsize=7, loc="upper left")
    ax_acc.legend(fontsize=6, ncol=4, loc="lower left")
    fig.suptitle(f"replay: {timeline['config']['scenario']} (dashed line: shift onset)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
