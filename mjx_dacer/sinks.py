"""Where a chunk's results go: the progress line, metrics.csv, TensorBoard, curves.png and summary.md.

The runner turns each chunk's metrics into one `ChunkResult` and hands it to
every sink; nothing is read back from disk. A sink is started with the rows
a resumed run already has (none for a new run), receives each result once,
and is closed at the end.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from mjx_dacer import report
from mjx_dacer.rundir import RunDir, RunSpec

ProgressFn = Callable[[str], None]

# Columns of a held run that still describe it; its other numbers belong to a discarded continuation.
_KEPT_WHEN_HELD = ("frozen", "diverged", "nonfinite_iteration")


def chunk_rows(metrics: Mapping[str, Any], spec: RunSpec) -> list[dict]:
    """metrics.csv's rows for one chunk: one per run, from the chunk's metrics (host arrays, leading axis R).

    `nonfinite` (per metric name, whether it was first non-finite) becomes the
    `nonfinite_metric` column: the name of the first such metric, "" if none.
    """
    out = []
    for b, (g, seed) in enumerate(spec.entries):
        ids = {"run": b, "label": spec.label(g), "seed": seed,
               "iteration": int(metrics["iteration"][b]), "env_steps": int(metrics["env_steps"][b])}
        held = bool(metrics["frozen"][b])
        values: dict[str, Any] = {
            "nonfinite_metric": next((k for k, bad in metrics["nonfinite"].items() if bad[b]), "")
        }
        for k in metrics:
            if k not in ids and k not in ("eval_returns", "nonfinite"):
                values[k] = math.nan if held and k not in _KEPT_WHEN_HELD else float(metrics[k][b])
        out.append({**ids, **dict(sorted(values.items()))})  # metric columns in name order
    return out


@dataclasses.dataclass(frozen=True)
class ChunkResult:
    """One chunk, as the sinks see it.

    Attributes:
      chunk, num_chunks: this chunk's number (from 1) and the run's count.
      iteration: reported iterations done (counted after the warm-up); env_steps: per run, warm-up included.
      warmup: the chunk was the warm-up.
      seconds: the chunk's wall-clock time, compile excluded; eta_seconds: for the chunks left, at this speed.
      env_steps_per_second, updates_per_second: over all runs, in this chunk.
      rows: metrics.csv's rows of this chunk, one per run.
    """

    chunk: int
    num_chunks: int
    iteration: int
    env_steps: int
    warmup: bool
    seconds: float
    eta_seconds: float
    env_steps_per_second: float
    updates_per_second: float
    rows: list[dict]


class Sink(Protocol):
    def start(self, rows: Sequence[dict]) -> None: ...
    def write(self, result: ChunkResult) -> None: ...
    def close(self) -> None: ...


class CsvSink:
    """metrics.csv, rewritten from the kept rows at the start (a resume drops rows after its checkpoint)."""

    def __init__(self, run_dir: RunDir):
        self.path = run_dir.metrics

    def start(self, rows: Sequence[dict]) -> None:
        self.path.unlink(missing_ok=True)
        report.append_rows(self.path, rows)

    def write(self, result: ChunkResult) -> None:
        report.append_rows(self.path, result.rows)

    def close(self) -> None:
        pass


class TensorBoardSink:
    """tb/runNNN/: every numeric column of each run's rows, at its iteration (needs tensorboardX)."""

    def __init__(self, run_dir: RunDir, runs: int):
        self.directory, self.runs, self.writers = run_dir.tensorboard, runs, None

    def start(self, rows: Sequence[dict]) -> None:
        pass

    def write(self, result: ChunkResult) -> None:
        if self.writers is None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:  # optional at run time
                self.writers = []
                return
            self.writers = [SummaryWriter(str(self.directory / f"run{b:03d}")) for b in range(self.runs)]
        for row in result.rows if self.writers else ():
            w = self.writers[row["run"]]
            for k, v in row.items():
                if k not in report.ID_COLUMNS and isinstance(v, float):
                    w.add_scalar(k, v, row["iteration"])
            w.flush()

    def close(self) -> None:
        for w in self.writers or ():
            w.close()
        self.writers = None


class ReportSink:
    """curves.png and summary.md, redrawn after each chunk from all rows so far."""

    def __init__(self, run_dir: RunDir, title: str, total_iterations: int):
        self.run_dir, self.title, self.total_iterations = run_dir, title, total_iterations
        self.rows: list[dict] = []

    def start(self, rows: Sequence[dict]) -> None:
        self.rows = list(rows)

    def write(self, result: ChunkResult) -> None:
        self.rows.extend(result.rows)
        report.write_curves(self.rows, self.run_dir.curves, self.title)
        self.run_dir.summary.write_text(report.summary_markdown(self.rows, self.total_iterations, self.title))

    def close(self) -> None:
        pass


class ProgressSink:
    """One line per chunk (speed, evaluation return, alpha, ETA), and one per run that diverged in it."""

    def __init__(self, progress: ProgressFn, total_iterations: int):
        self.progress, self.total_iterations = progress, total_iterations

    def start(self, rows: Sequence[dict]) -> None:
        pass

    def write(self, r: ChunkResult) -> None:
        live = [row for row in r.rows if not row["frozen"]]
        returns = np.array([row["eval_return"] for row in live] or [math.nan])
        alphas = [row["alpha"] for row in live if "alpha" in row]  # agents without an alpha (TD3, DDPG) skip it
        self.progress(
            f"[{r.chunk}/{r.num_chunks}] iter {r.iteration}/{self.total_iterations}"
            f"{' (warm-up)' if r.warmup else ''} env steps {r.env_steps} | "
            f"{r.env_steps_per_second:,.0f} env steps/s, {r.updates_per_second:,.0f} updates/s | "
            f"eval return {np.mean(returns):.1f} (runs {np.min(returns):.1f}..{np.max(returns):.1f}) | "
            + (f"alpha {np.mean(alphas):.3f} | " if alphas else "")
            + f"ETA {duration(r.eta_seconds)}"
        )
        for row in r.rows:
            if row["diverged"] == 1.0:
                self.progress(
                    f"diverged: run {row['run']} (seed {row['seed']}, {row['label']}): first non-finite "
                    f"'{row['nonfinite_metric']}' at iteration {int(row['nonfinite_iteration'])}"
                )

    def close(self) -> None:
        pass


def duration(seconds: float) -> str:
    """'1h02m' or '3m07s'."""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
