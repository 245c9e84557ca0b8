"""Plots of an evaluation (matplotlib, Agg backend: no display needed).

* ``failed_payment_rate.png``: failed-payment rate per policy with its 95% bootstrap CI, best highlighted,
  the fluid lower bound as a dashed line;
* ``timeline_<policy>.png`` for the first seed: intents arriving, paid and lost per second; per-bank outage
  bands; the admit rate chosen for each bank; the share of its quick-enabled cards sent elsewhere than quick.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .names import short_names, slug  # noqa: E402
from .runner import EvaluationResult  # noqa: E402

__all__ = ["plot_all", "plot_failed_rates", "plot_learning_curve", "plot_timeline", "slug"]


def plot_failed_rates(result: EvaluationResult, path: str | Path) -> Path:
    """Bar chart of the mean failed-payment rate with 95% CIs; the bound as a dashed line."""
    names = [p.name for p in result.policies]
    shown = short_names(names)
    means = np.array([100 * p.summary["failed_payment_rate"] for p in result.policies])
    ci = np.array([[100 * v for v in p.summary["failed_payment_rate_ci"]] for p in result.policies]).reshape(-1, 2)
    err = np.stack([means - ci[:, 0], ci[:, 1] - means]).clip(min=0)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.2))
    colors = ["tab:green" if n == result.best else "tab:blue" for n in names]
    x = np.arange(len(names))
    ax.bar(x, means, yerr=err, capsize=4, color=colors, alpha=0.85)
    for xi, m in zip(x, means, strict=True):
        ax.annotate(f"{m:.2f}", (xi, m), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8)
    if result.bound is not None:
        b = 100 * result.bound["failed_payment_rate"]
        ax.axhline(b, color="black", linestyle="--", linewidth=1, label=f"fluid lower bound {b:.2f}%")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xticks(x, [shown[n] for n in names], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("failed payments (% of intents)")
    n = len(result.seeds)
    ax.set_title(f"{result.scenario}: mean and 95% bootstrap CI over {n} episode{'s' if n != 1 else ''}")
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_timeline(result: EvaluationResult, policy: str, path: str | Path, label: str | None = None) -> Path:
    """Timeline of one policy on the first seed: flows, outages per bank, admit rates (titled ``label``, by
    default the policy's short name)."""
    p = next(r for r in result.policies if r.name == policy)
    tl = p.timeline
    if tl is None:
        raise ValueError(f"no timeline recorded for {policy}")
    t = np.asarray(tl["t_s"]) / 60.0  # minutes after midnight
    dt = float(result.meta.get("dt_s", 5.0))
    banks = list(tl["bank_names"])
    down = np.asarray(tl["down"], dtype=bool)
    admit = np.asarray(tl["admit"])
    route = np.asarray(tl["route"])
    fig, axes = plt.subplots(
        4, 1, figsize=(9, 9), sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 2, 1.6]}, constrained_layout=True
    )
    ax = axes[0]
    ax.plot(t, np.asarray(tl["arrived"]) / dt, label="intents arriving", color="tab:blue", linewidth=1)
    ax.plot(t, np.asarray(tl["succeeded"]) / dt, label="paid", color="tab:green", linewidth=1)
    ax.plot(t, np.asarray(tl["lost"]) / dt, label="lost", color="tab:red", linewidth=1)
    ax.set_ylabel("per second")
    ax.legend(loc="upper right", fontsize=8)
    label = label or short_names([r.name for r in result.policies])[policy]
    ax.set_title(f"{result.scenario}, seed {tl['seed']}: {label}")
    ax = axes[1]
    labels = [*banks, "switch"][: down.shape[1]]
    step_min = dt / 60.0
    for i in range(down.shape[1]):
        on = down[:, i]
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
        spans = [(t[a] - step_min, (b - a) * step_min) for a, b in zip(edges[::2], edges[1::2], strict=True)]
        if spans:
            ax.broken_barh(spans, (i - 0.4, 0.8), color="tab:red", alpha=0.7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_ylabel("down")
    ax = axes[2]
    for b, name in enumerate(banks):
        ax.plot(t, admit[:, b], label=name, linewidth=1)
    ax.set_ylim(-0.03, 1.05)
    ax.set_ylabel("admit rate")
    ax.legend(loc="lower right", fontsize=7, ncol=min(6, len(banks)))
    ax = axes[3]
    for b in range(len(banks)):
        ax.plot(t, 1.0 - route[:, b, 0], linewidth=1)
    ax.set_ylim(-0.03, 1.05)
    ax.set_ylabel("rerouted\n(not quick)")
    ax.set_xlabel("minutes after midnight")
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_all(result: EvaluationResult, out_dir: str | Path) -> list[Path]:
    """Every plot of an evaluation into ``out_dir``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [plot_failed_rates(result, out / "failed_payment_rate.png")]
    shown = short_names([p.name for p in result.policies])  # distinct, so their file names are too
    used: set[str] = set()
    for p in result.policies:
        if p.timeline is None:
            continue
        name = slug(shown[p.name])
        while name in used:  # two names that differ only in characters a file name cannot hold
            name += "_"
        used.add(name)
        files.append(plot_timeline(result, p.name, out / f"timeline_{name}.png", shown[p.name]))
    return files


def plot_learning_curve(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    references: dict[str, float] | None = None,
    title: str = "",
) -> Path:
    """Failed-payment rate of periodic evaluations against training steps, one line per run.

    ``curves`` maps a label to ``(timesteps, failed_payment_rate)`` (``learning_curve.npz`` of a run);
    ``references`` draws horizontal lines (e.g. the status quo, the best heuristic, the fluid bound).
    """
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for label, (steps, rates) in curves.items():
        ax.plot(np.asarray(steps) / 1e6, 100 * np.asarray(rates), marker="o", ms=3, label=label)
    styles = ["--", ":", "-."]
    for j, (label, rate) in enumerate((references or {}).items()):
        ax.axhline(100 * rate, ls=styles[j % len(styles)], color="gray", lw=1)
        ax.annotate(f"{label} {100 * rate:.2f}%", (0.01, 100 * rate), xycoords=("axes fraction", "data"),
                    va="bottom", fontsize=8, color="dimgray")  # fmt: skip
    ax.set_xlabel("training steps (millions)")
    ax.set_ylabel("failed payments (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
