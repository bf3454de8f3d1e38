"""Run outputs: metrics.csv rows, learning curves (mean and 95% CI over seeds), summary.md."""

from __future__ import annotations

import csv
import math
import pathlib
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from mjx_dacer.evaluate import final_performance

# Columns that identify a row; the rest are metrics.
ID_COLUMNS = ("run", "label", "seed", "iteration", "env_steps")


def append_rows(path: pathlib.Path, rows: Sequence[dict]) -> None:
    """Append rows to a CSV file, writing the header on first use."""
    if not rows:
        return
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


def _parse(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def read_rows(path: pathlib.Path) -> list[dict]:
    """Rows of metrics.csv; numbers as floats, the label and other text as strings."""
    with path.open() as f:
        return [{k: (v if k == "label" else _parse(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def _t_quantile_975(dof: int) -> float:
    """Student-t 97.5% quantile (two-sided 95% CI) for small sample sizes."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
    return table.get(dof, 1.96 if dof > 30 else 2.0 + 2.5 / dof)


def curves_by_label(rows: Iterable[dict]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """label -> (iterations (P,), eval returns (seeds, P), env_steps (P,))."""
    grouped: dict[str, dict[float, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    steps: dict[float, float] = {}
    for r in rows:
        grouped[r["label"]][r["seed"]][r["iteration"]] = r["eval_return"]
        steps[r["iteration"]] = r["env_steps"]
    out = {}
    for label, by_seed in grouped.items():
        iters = sorted(set.intersection(*(set(v) for v in by_seed.values())))
        returns = np.array([[by_seed[s][i] for i in iters] for s in sorted(by_seed)])
        out[label] = (np.array(iters), returns, np.array([steps[i] for i in iters]))
    return out


def write_curves(rows: Sequence[dict], path: pathlib.Path, title: str) -> None:
    """Plot evaluation return vs iterations: mean over seeds with a 95% t-interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, (iters, returns, _) in curves_by_label(rows).items():
        # Runs held by the divergence guard have NaN returns: average over the others.
        mean = np.nanmean(returns, axis=0)
        n = returns.shape[0]
        if n > 1:
            half = _t_quantile_975(n - 1) * np.nanstd(returns, axis=0, ddof=1) / math.sqrt(n)
            ax.fill_between(iters, mean - half, mean + half, alpha=0.25)
        ax.plot(iters, mean, marker="o", markersize=3, label=f"{label} ({n} seed{'s' if n > 1 else ''})")
    ax.set_xlabel("iterations (gradient updates; env steps = iterations x num_envs)")
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_markdown(rows: Sequence[dict], total_iterations: int, title: str) -> str:
    """The paper's metric (Table 1): per seed, the best evaluation return in the last 10% of iterations."""
    lines = [
        f"# {title}",
        "",
        "Metric (DACER Table 1): per seed, the highest evaluation return within the last 10% of",
        "iterations; then mean +- std over seeds.",
        "",
        "| grid point | seeds | per-seed metric | mean +- std | last eval (mean) | iterations | env steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, (iters, returns, steps) in curves_by_label(rows).items():
        per_seed = final_performance(iters, returns, total_iterations)
        lines.append(
            f"| {label} | {len(per_seed)} | {', '.join(f'{v:.1f}' for v in per_seed)} | "
            f"{per_seed.mean():.1f} +- {per_seed.std():.1f} | {returns[:, -1].mean():.1f} | "
            f"{int(iters[-1])} | {int(steps[-1])} |"
        )
    return "\n".join(lines) + "\n"
