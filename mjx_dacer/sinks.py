"""Where a chunk's results go: the progress line, metrics.csv and timing.csv, TensorBoard, curves.png, summary.md.

The runner turns each chunk's metrics into one `ChunkResult` and hands it to
every sink; nothing is read back from disk. A sink is started with the rows
a resumed run already has (none for a new run), receives each result once,
and is closed at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import shutil
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from mjx_dacer import report
from mjx_dacer.config import Config, ConfigError, to_dict
from mjx_dacer.rundir import RunDir, RunSpec

ProgressFn = Callable[[str], None]

# metrics.csv's columns, in this order (README, "What a run writes"): the row's identity (report.ID_COLUMNS),
# the evaluation, training episodes and counters, then the agent's update metrics in name order
# (DACER: actor_loss, alpha, critic_loss, entropy, ...), then the divergence guard's columns.
LEADING_COLUMNS = ("eval_return", "eval_return_std", "train_return", "train_episodes", "updates", "policy_iterations")
GUARD_COLUMNS = ("frozen", "diverged", "nonfinite_iteration", "nonfinite_metric")
# Counters and flags are integers in the rows and the CSV.
INTEGER_COLUMNS = ("train_episodes", "updates", "policy_iterations", "frozen", "diverged", "nonfinite_iteration")
# Columns of a held run that still describe it; its other numbers belong to a discarded continuation.
_KEPT_WHEN_HELD = ("frozen", "diverged", "nonfinite_iteration", "nonfinite_metric")


def chunk_rows(metrics: Mapping[str, Any], spec: RunSpec) -> list[dict]:
    """metrics.csv's rows for one chunk: one per run, from the chunk's metrics (host arrays, leading axis R).

    Columns in the documented order (LEADING_COLUMNS, the agent's metrics by name, GUARD_COLUMNS);
    counters and flags as ints. A value that does not exist is None (blank in the CSV): the agent's
    update metrics in a chunk without updates (the warm-up), train_return in a chunk where no training
    episode ended, and every number of a run the divergence guard holds but its guard columns.
    `nonfinite` (per metric name, whether it was first non-finite) becomes the `nonfinite_metric`
    column: the name of the first such metric, None (blank) if none.
    """
    fixed = ("iteration", "env_steps", "eval_returns", "nonfinite", *LEADING_COLUMNS, *GUARD_COLUMNS)
    agent_columns = sorted(k for k in metrics if k not in fixed)
    out = []
    for b, (g, seed) in enumerate(spec.entries):
        row: dict[str, Any] = {"run": b, "label": spec.label(g), "seed": seed,
                               "iteration": int(metrics["iteration"][b]), "env_steps": int(metrics["env_steps"][b])}
        for k in (*LEADING_COLUMNS, *agent_columns, *GUARD_COLUMNS[:-1]):
            row[k] = int(metrics[k][b]) if k in INTEGER_COLUMNS else float(metrics[k][b])
        row["nonfinite_metric"] = next((k for k, bad in metrics["nonfinite"].items() if bad[b]), None)
        if row["updates"] == 0:
            row.update(dict.fromkeys(agent_columns))
        if row["train_episodes"] == 0:
            row["train_return"] = None
        if row["frozen"]:
            row.update({k: None for k in (*LEADING_COLUMNS, *agent_columns) if k not in _KEPT_WHEN_HELD})
        out.append(row)
    return out


@dataclasses.dataclass(frozen=True)
class ChunkResult:
    """One chunk, as the sinks see it.

    Attributes:
      chunk, num_chunks: this chunk's number (from 1) and the run's count.
      iteration: reported iterations done (counted after the warm-up); env_steps: per run, warm-up included.
      warmup: the chunk was the warm-up (of no iterations, env_steps 0, without one: only its evaluation).
      seconds: the chunk's wall-clock time, compile excluded; eta_seconds: for the chunks left, at the
        speed of the training chunks so far (None while only the warm-up has run: it is faster).
      env_steps_per_second, updates_per_second: over all runs, in this chunk.
      rows: metrics.csv's rows of this chunk, one per run.
      timing: timing.csv's row of this chunk (`TIMING_COLUMNS`), or None.
    """

    chunk: int
    num_chunks: int
    iteration: int
    env_steps: int
    warmup: bool
    seconds: float
    eta_seconds: float | None
    env_steps_per_second: float
    updates_per_second: float
    rows: list[dict]
    timing: dict | None = None


# timing.csv: when each chunk ended, apart from metrics.csv so that metrics.csv stays exactly reproducible
# (a resumed run's rows equal an uninterrupted run's). `run` is blank where the row holds for every run
# of the program (DACER and the off-policy baselines: all runs share each chunk), the run number where
# runs train one after another (PPO). wall_seconds: the run's training wall clock at the chunk's end,
# from the start of the Runner (program build and compiles included; Python's start-up and imports not),
# summed over the sessions of a resumed run; blank after resuming from a checkpoint that kept no timing.
# chunk_seconds: the chunk alone; compile_seconds: the compiles since the previous row; session: 1, then
# one more per resume.
TIMING_COLUMNS = ("run", "chunk", "iteration", "env_steps", "wall_seconds", "chunk_seconds", "compile_seconds",
                  "session")


class Sink(Protocol):
    def start(self, rows: Sequence[dict], timing: Sequence[dict] = ()) -> None: ...
    def write(self, result: ChunkResult) -> None: ...
    def close(self) -> None: ...


class CsvSink:
    """metrics.csv and timing.csv, rewritten from the kept rows at the start (a resume drops the rows
    written after its checkpoint)."""

    def __init__(self, run_dir: RunDir):
        self.path, self.timing_path = run_dir.metrics, run_dir.timing

    def start(self, rows: Sequence[dict], timing: Sequence[dict] = ()) -> None:
        for path, kept in ((self.path, rows), (self.timing_path, timing)):
            path.unlink(missing_ok=True)
            report.append_rows(path, kept)

    def write(self, result: ChunkResult) -> None:
        report.append_rows(self.path, result.rows)
        if result.timing is not None:
            report.append_rows(self.timing_path, [result.timing])

    def close(self) -> None:
        pass


# TensorBoard tags and W&B keys of metrics.csv's columns, "group/name": both tools show one section per
# group. An agent's metric not named here goes to "loss/<name>" if it is a `<name>_loss`, else to
# "other/<name>" (`metric_tag`). The identity and divergence-guard columns are not logged.
METRIC_TAGS = {
    "eval_return": "eval/return",
    "eval_return_std": "eval/return_std",
    "train_return": "train/return",
    "train_episodes": "train/episodes",
    "updates": "train/updates",
    "policy_iterations": "train/policy_iterations",
    "actor_loss": "loss/actor",
    "critic_loss": "loss/critic",
    "alpha": "alpha/alpha",  # the entropy regulator: alpha, the GMM entropy estimate and its target
    "entropy": "alpha/entropy",
    "target_entropy": "alpha/target_entropy",
    "q_mean": "critic/q_mean",
    "q_std": "critic/q_std",
    "sigma_bound": "critic/sigma_bound",
    "target_mean": "critic/target_mean",
    "td_error": "critic/td_error",
}
ENV_STEPS_TAG = "train/env_steps"  # env steps (warm-up included) at step = iteration
# TensorBoard's x axis is the step the point was written at: these tags are written a second time
# under by_env_steps/ at step = env steps, to compare with curves plotted against env steps.
BY_ENV_STEPS_TAGS = ("eval/return", "train/return")
_UNTRACKED_COLUMNS = (*report.ID_COLUMNS, *GUARD_COLUMNS)
_UNSAFE_PATH_CHARACTERS = re.compile(r"[^A-Za-z0-9._=,+-]")


def metric_tag(column: str) -> str:
    """The TensorBoard tag / W&B key of a metrics.csv column (METRIC_TAGS, else its fallback group)."""
    if column in METRIC_TAGS:
        return METRIC_TAGS[column]
    return f"loss/{column.removesuffix('_loss')}" if column.endswith("_loss") else f"other/{column}"


def tracked_scalars(row: Mapping[str, Any]) -> dict[str, float | int]:
    """{tag: value} of a metrics.csv row's values that exist, in column order.

    None (a value that does not exist) is left out, not written as 0; so are NaN and inf (TensorBoard
    cannot draw them; metrics.csv keeps them), text, and the identity and divergence-guard columns.
    """
    out: dict[str, float | int] = {}
    for column, value in row.items():
        if (column in _UNTRACKED_COLUMNS or isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value)):
            continue
        out[metric_tag(column)] = value
    return out


def path_part(text: str) -> str:
    """`text` as one folder name: characters other than letters, digits and . _ = , + - become "_"."""
    safe = _UNSAFE_PATH_CHARACTERS.sub("_", text)
    return "_" if safe in ("", ".", "..") else safe


class TensorBoardSink:
    """tb/<grid label>/seed<k>/: each run's metrics at step = iteration (needs tensorboardX; without it, nothing).

    One TensorBoard run per (grid point, seed), named by its grid label ("default" without a grid; made
    a folder name by `path_part`) and its seed. Tags: `tracked_scalars` (eval/, train/, loss/, alpha/,
    critic/, other/), ENV_STEPS_TAG, and BY_ENV_STEPS_TAGS again under by_env_steps/ at step = env steps.
    A resume writes tb/ again from the kept rows (as metrics.csv): the old event files may hold points
    past the checkpoint, which TensorBoard would draw beside the new ones. (tensorboardX's purge_step
    cannot do it: it hides steps by one number, and by_env_steps/ counts steps in env steps.)
    """

    def __init__(self, run_dir: RunDir):
        self.directory = run_dir.tensorboard
        self.writers: dict[int, Any] = {}  # run index -> SummaryWriter
        self.folders: dict[int, str] = {}  # run index -> "<label>/seed<k>", relative to tb/
        self._writer_class: Any = None  # tensorboardX.SummaryWriter once imported; False if it is missing

    def start(self, rows: Sequence[dict], timing: Sequence[dict] = ()) -> None:
        if rows and self._writers_available():
            shutil.rmtree(self.directory, ignore_errors=True)
            self._write_rows(rows)

    def folder(self, row: Mapping[str, Any]) -> str:
        """The run's folder under tb/: "<label>/seed<k>"; a label that another one's folder name already
        has (after `path_part`) gets "~2", "~3", ... appended."""
        b = row["run"]
        if b not in self.folders:
            base, n, name = path_part(str(row["label"])), 1, None
            taken = set(self.folders.values())
            while name is None or name in taken:
                name = f"{base if n == 1 else f'{base}~{n}'}/seed{row['seed']}"
                n += 1
            self.folders[b] = name
        return self.folders[b]

    def _writers_available(self) -> bool:
        if self._writer_class is None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:  # optional at run time
                SummaryWriter = False
            self._writer_class = SummaryWriter
        return bool(self._writer_class)

    def write(self, result: ChunkResult) -> None:
        if self._writers_available():
            self._write_rows(result.rows)

    def _write_rows(self, rows: Sequence[dict]) -> None:
        for row in rows:
            scalars = tracked_scalars(row)
            if not scalars:  # a run held by the divergence guard: nothing to draw
                continue
            b = row["run"]
            if b not in self.writers:
                self.writers[b] = self._writer_class(str(self.directory / self.folder(row)))
            w, step = self.writers[b], row["iteration"]
            for tag, value in scalars.items():
                w.add_scalar(tag, value, step)
            w.add_scalar(ENV_STEPS_TAG, row["env_steps"], step)
            for tag in BY_ENV_STEPS_TAGS:
                if tag in scalars:
                    w.add_scalar(f"by_env_steps/{tag}", scalars[tag], row["env_steps"])
            w.flush()

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers = {}


WANDB_MISSING = "--track needs wandb: pip install 'mjx_dacer[wandb]' (or wandb)"
_WANDB_PROJECT_FORBIDDEN = "/\\#?%:"


def _import_wandb():
    try:
        import wandb
    except ImportError as e:
        if e.name == "wandb":
            raise ConfigError(WANDB_MISSING) from None
        raise ConfigError(f"--track: importing wandb failed ({type(e).__name__}: {e})") from None
    return wandb


def check_tracking_available(track: str | None) -> None:
    """Raises ConfigError unless `track` is None (no W&B logging) or a W&B project name with wandb importable.

    `Runner` calls it first, before the program is built and the run directory is created.
    """
    if track is None:
        return
    if (not isinstance(track, str) or not track.strip() or len(track) > 128
            or any(c in _WANDB_PROJECT_FORBIDDEN or not c.isprintable() for c in track)):
        raise ConfigError(f"--track takes a W&B project name (1 to 128 characters, none of "
                          f"{' '.join(_WANDB_PROJECT_FORBIDDEN)}), got {track!r}")
    _import_wandb()


def wandb_run_id(run_dir: RunDir, run: int) -> str | None:
    """A W&B run id for run `run` of this run directory, the same when it is resumed (or made longer): from
    the directory's absolute path and its config.yaml's `created` stamp (so a new run in the same place gets
    new ids). None when config.yaml has no stamp (W&B then picks an id)."""
    created = run_dir.created()
    if created is None:
        return None
    key = f"{run_dir.path.resolve()}\n{created}\n{run}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class WandbSink:
    """Weights & Biases logging (`track` = the project): one W&B run per (grid point, seed), as CleanRL.

    Each W&B run is named "<run dir>/<grid label>/seed<k>" and grouped as "<run dir>/<grid label>", so
    W&B's group view draws the mean over seeds of each grid point; tags: the task and the algorithm;
    its config is the resolved Config of its grid point (the swept values included) plus a `run` entry
    (index, seed, PRNG seed, grid label and point, run directory). It logs `tracked_scalars` (the
    TensorBoard tags) and ENV_STEPS_TAG at step = iteration; W&B can use train/env_steps as a panel's
    x axis. A resumed run continues the same W&B runs (`wandb_run_id`, resume="allow"). The W&B
    entity, mode (WANDB_MODE=offline) and login come from wandb's own settings and environment.
    Needs wandb >= 0.19.10 (several runs open in one process: reinit="create_new").
    """

    def __init__(self, project: str, run_dir: RunDir, config: Config, spec: RunSpec):
        self.project, self.run_dir, self.config, self.spec = project, run_dir, config, spec
        self.runs: list[Any] = []  # one wandb Run per entry of spec, once started

    def init_kwargs(self, run: int) -> dict[str, Any]:
        """wandb.init's arguments for run `run` (an entry of the spec)."""
        g, seed = self.spec.entries[run]
        label = self.spec.label(g)
        experiment = self.run_dir.path.resolve().name
        point = self.config.replace(**self.spec.grid[g])
        run_id = wandb_run_id(self.run_dir, run)
        return dict(
            project=self.project, group=f"{experiment}/{label}", name=f"{experiment}/{label}/seed{seed}",
            tags=[self.config.env, self.config.algo], id=run_id, resume="allow" if run_id else None,
            reinit="create_new",
            config={**to_dict(point), "run": {"index": run, "seed": seed, "prng_seed": point.seed + seed,
                                              "grid_label": label, "grid_point": dict(self.spec.grid[g]),
                                              "dir": str(self.run_dir.path.resolve())}},
        )

    def start(self, rows: Sequence[dict], timing: Sequence[dict] = ()) -> None:
        wandb = _import_wandb()
        for b in range(len(self.spec.entries)):
            try:
                self.runs.append(wandb.init(**self.init_kwargs(b)))
            except Exception as e:  # not logged in, no network, an old wandb: one line, not a traceback
                self.close()
                raise ConfigError(f"--track: wandb.init failed ({type(e).__name__}: {e}); log in with `wandb "
                                  "login` or set WANDB_MODE=offline; --track needs wandb>=0.19.10") from e

    def write(self, result: ChunkResult) -> None:
        for row in result.rows:
            scalars = tracked_scalars(row)
            if scalars:  # a run held by the divergence guard has nothing to log
                self.runs[row["run"]].log({**scalars, ENV_STEPS_TAG: row["env_steps"]}, step=row["iteration"])

    def close(self) -> None:
        for run in self.runs:
            run.finish()
        self.runs = []


class ReportSink:
    """curves.png and summary.md, redrawn after each chunk from all rows so far."""

    def __init__(self, run_dir: RunDir, title: str, total_iterations: int):
        self.run_dir, self.title, self.total_iterations = run_dir, title, total_iterations
        self.rows: list[dict] = []
        self.timing: list[dict] = []

    def start(self, rows: Sequence[dict], timing: Sequence[dict] = ()) -> None:
        self.rows, self.timing = list(rows), list(timing)

    def write(self, result: ChunkResult) -> None:
        self.rows.extend(result.rows)
        if result.timing is not None:
            self.timing.append(result.timing)
        report.write_curves(self.rows, self.run_dir.curves, self.title)
        self.run_dir.summary.write_text(
            report.summary_markdown(self.rows, self.total_iterations, self.title, self.timing))

    def close(self) -> None:
        pass


class ProgressSink:
    """One line per chunk (speed, evaluation return, alpha, ETA), and one per run that diverged in it.

    A sweep (several grid points) gets a second line: the evaluation return of each grid point, the
    mean over its seeds. The warm-up chunk acts at random and updates nothing: its line says so
    instead of showing update speeds, and its evaluation is the untrained policy's.
    """

    def __init__(self, progress: ProgressFn, total_iterations: int):
        self.progress, self.total_iterations = progress, total_iterations

    def start(self, rows: Sequence[dict], timing: Sequence[dict] = ()) -> None:
        pass

    def write(self, r: ChunkResult) -> None:
        live = [row for row in r.rows if not row["frozen"]]
        returns = np.array([row["eval_return"] for row in live] or [math.nan])
        # Agents without an alpha (TD3, DDPG) have no column; before the first update it is blank.
        alphas = [row["alpha"] for row in live if row.get("alpha") is not None]
        if r.warmup:
            speed = (f"warm-up: random actions, {r.env_steps_per_second:,.0f} env steps/s" if r.env_steps
                     else "no warm-up")
            evaluated = "untrained policy"
        else:
            speed = f"{r.env_steps_per_second:,.0f} env steps/s, {r.updates_per_second:,.0f} updates/s"
            evaluated = "eval return"
        eta = "ETA after the first training chunk" if r.eta_seconds is None else f"ETA {duration(r.eta_seconds)}"
        self.progress(
            f"[{r.chunk}/{r.num_chunks}] iter {r.iteration}/{self.total_iterations} env steps {r.env_steps} | "
            f"{speed} | {evaluated} {np.mean(returns):.1f}"
            + (f" (runs {np.min(returns):.1f}..{np.max(returns):.1f})" if len(returns) > 1 else "") + " | "
            + (f"alpha {np.mean(alphas):.3f} | " if alphas else "") + eta
        )
        by_label: dict[str, list[float]] = {}
        for row in live:
            by_label.setdefault(row["label"], []).append(row["eval_return"])
        if len({row["label"] for row in r.rows}) > 1:
            self.progress("  by grid point (mean over seeds): "
                          + " | ".join(f"{label} {np.mean(v):.1f}" for label, v in by_label.items()))
        for row in r.rows:
            if row["diverged"]:
                self.progress(
                    f"diverged: run {row['run']} (seed {row['seed']}, {row['label']}): first non-finite "
                    f"'{row['nonfinite_metric']}' at iteration {row['nonfinite_iteration']}"
                )

    def close(self) -> None:
        pass


duration = report.duration  # '1h02m' or '3m07s'
