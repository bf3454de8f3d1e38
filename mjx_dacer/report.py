"""Run outputs: metrics.csv rows, learning curves (mean and bootstrap 95% CI over seeds), summary.md;
and across run directories: the paper's Table 1 and curves per task (`mjx-dacer table`, `mjx-dacer plot`).

The functions across runs read run directories only (config.yaml, metrics.csv);
they never import the runner.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import pathlib
import re
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import numpy as np
import yaml

from mjx_dacer import paper
from mjx_dacer.config import ConfigError, to_dict
from mjx_dacer.evaluate import final_performance
from mjx_dacer.rundir import RunDir

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
    if value == "":
        return None  # a value that does not exist (e.g. losses before the first update)
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def read_rows(path: pathlib.Path) -> list[dict]:
    """Rows of metrics.csv (or timing.csv); integers as ints, other numbers as floats, blanks as None, the label
    and other text as strings (the rows the run wrote, as `sinks.chunk_rows` made them).

    Raises ConfigError (one line) for a file that is not such a table: not text, a row with more or fewer
    fields than the header (a truncated write), or an id column (run, seed, iteration, env_steps) not an integer.
    """
    rows = []
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                if None in row or None in row.values():
                    raise ValueError(f"line {reader.line_num} has {'more' if None in row else 'fewer'} fields "
                                     "than the header")
                parsed = {k: (v if k == "label" else _parse(v)) for k, v in row.items()}
                for column in ("run", "seed", "iteration", "env_steps"):
                    blank_run = (column, row.get(column)) == ("run", "")  # timing.csv: a row of every run
                    if column in parsed and not isinstance(parsed[column], int) and not blank_run:
                        raise ValueError(f"line {reader.line_num}: {column} {row[column]!r} is not an integer")
                rows.append(parsed)
    except (UnicodeDecodeError, csv.Error, ValueError) as e:
        reason = "it is not text" if isinstance(e, UnicodeDecodeError) else str(e)
        raise ConfigError(f"{path} is damaged: {reason}") from None
    return rows


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
        # dtype float: a run held by the divergence guard has blank (None) returns, which become NaN.
        returns = np.array([[by_seed[s][i] for i in iters] for s in sorted(by_seed)], dtype=float)
        out[label] = (np.array(iters), returns, np.array([steps[i] for i in iters]))
    return out


def seed_band(returns: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """returns (S, P) per seed and point -> (mean (P,), band): the mean over the finite seeds of each point
    (`finite_mean`) and its bootstrap 95% CI over seeds (`bootstrap_ci`: (lo, hi), NaN where fewer than
    2 seeds are finite); band None for a single seed.

    With few seeds a t-interval is very wide (its quantile is 12.7 for 2 seeds); the bootstrap interval
    of the mean stays within the seeds' range.
    """
    returns = np.asarray(returns, dtype=float)
    return finite_mean(returns), (bootstrap_ci(returns) if returns.shape[0] > 1 else None)


def env_steps_map(rows: Iterable[dict]) -> tuple[float, float] | None:
    """(offset, per_iteration) with env_steps = offset + per_iteration * iteration for every row: offset is
    the warm-up's env steps, per_iteration the env steps of one iteration (num_envs). Read from the rows'
    own iteration and env_steps columns; None if they do not fix one such line (fewer than 2 distinct
    iterations) or do not lie on one."""
    pairs = {(int(r["iteration"]), int(r["env_steps"])) for r in rows}
    iters = sorted({i for i, _ in pairs})
    if len(iters) < 2 or len(pairs) != len(iters):
        return None
    steps = dict(pairs)
    per_iteration = (steps[iters[-1]] - steps[iters[0]]) / (iters[-1] - iters[0])
    offset = steps[iters[0]] - per_iteration * iters[0]
    if per_iteration <= 0 or any(abs(offset + per_iteration * i - e) > 0.5 for i, e in pairs):
        return None
    return offset, per_iteration


def write_curves(rows: Sequence[dict], path: pathlib.Path, title: str):
    """Plot evaluation return vs iterations, one line per grid point; returns the matplotlib Figure.

    Each line is the mean over seeds (`seed_band`) with a bootstrap 95% CI of the mean as a band (none
    for a single seed; the legend says so). Iteration 0 is the untrained policy, evaluated at the end of
    the warm-up. The top axis gives env steps (warm-up included), by `env_steps_map` of the rows.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    fig = Figure(figsize=(7, 4.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    banded = False
    for label, (iters, returns, _) in curves_by_label(rows).items():
        mean, band = seed_band(returns)  # runs held by the divergence guard (NaN returns) are left out per point
        n = returns.shape[0]
        frozen = int((~np.isfinite(returns)).any(axis=1).sum())
        note = f"{n} seed{'' if n == 1 else 's'}" + (f", {frozen} frozen" if frozen else "")
        (line,) = ax.plot(iters, mean, marker="o", markersize=3, label=f"{label} ({note})")
        if band is not None:
            ax.fill_between(iters, *band, color=line.get_color(), alpha=0.25, linewidth=0)
            banded = True
    ax.set_xlabel("iterations after the warm-up (0: the untrained policy)")
    ax.set_ylabel("evaluation return")
    mapping = env_steps_map(rows)
    if mapping is not None:
        offset, per_iteration = mapping
        top = ax.secondary_xaxis("top", functions=(lambda i: offset + per_iteration * i,
                                                   lambda e: (e - offset) / per_iteration))
        top.set_xlabel(f"env steps (warm-up included: {offset:,.0f}; {per_iteration:,.0f} per iteration)",
                       fontsize=9)
        top.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    caption = (f"mean over seeds; band: bootstrap 95% CI of the mean ({BOOTSTRAP_RESAMPLES} resamples)"
               if banded else "one seed: no band")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, title=caption, title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def wall_clock_summary(timing: Sequence[dict]) -> str | None:
    """One sentence on timing.csv's rows (`sinks.TIMING_COLUMNS`): the wall clock to the last chunk, how much
    of it was compiling and how much the chunks, and the time per training iteration; None without rows.

    Time per iteration: the chunks' time over the iterations they advanced (the warm-up chunk, which
    advances none, is left out), all of a program's runs together; runs trained one after another (a
    `run` number in the rows) are timed apart and averaged.
    """
    if not timing:
        return None
    by_run: dict = defaultdict(list)
    for r in timing:
        by_run[r["run"]].append(r)
    per_iteration = []
    for rows in by_run.values():
        previous, seconds, iterations = 0, 0.0, 0
        for r in rows:
            if r["iteration"] > previous:
                seconds, iterations = seconds + r["chunk_seconds"], iterations + r["iteration"] - previous
            previous = r["iteration"]
        if iterations:
            per_iteration.append(seconds / iterations)
    # Runs trained one after another each have a clock: the run's wall clock is their sum.
    walls = [rows[-1]["wall_seconds"] for rows in by_run.values()]
    compiles = [r["compile_seconds"] for r in timing if r["compile_seconds"] is not None]
    chunks = sum(r["chunk_seconds"] for r in timing)
    sessions = len({r["session"] for r in timing})
    if None in walls:
        parts = ["Wall clock: unknown (resumed from a checkpoint that kept no timing)"]
    else:
        parts = [f"Wall clock: {duration(sum(walls))} to iteration {timing[-1]['iteration']} (program build and "
                 "compiles included)"]
    if compiles:
        parts.append(f"compiling {duration(sum(compiles))}")
    parts.append(f"the chunks {duration(chunks)}")
    if per_iteration:
        parts.append(f"{np.mean(per_iteration) * 1e3:.2f} ms per training iteration")
    parts.append(f"{sessions} session{'' if sessions == 1 else 's'} (each chunk in timing.csv)")
    return "; ".join(parts) + "."


def duration(seconds: float) -> str:
    """'1h02m' or '3m07s'."""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def summary_markdown(rows: Sequence[dict], total_iterations: int, title: str, timing: Sequence[dict] = ()) -> str:
    """The paper's metric (Table 1): per seed, the best evaluation return in the last 10% of iterations;
    then the wall clock (`wall_clock_summary`) if timing.csv's rows are given."""
    lines = [
        f"# {title}",
        "",
        "Metric (DACER Table 1): per seed, the highest evaluation return within the last 10% of",
        "iterations; then mean +- std over seeds.",
        "",
        "| grid point | seeds | per-seed metric | mean +- std | last eval (mean) | iterations | env steps |",
        "|---|---|---|---|---|---|---|",
    ]
    behind = []
    for label, by_seed in _seed_curves(rows).items():
        # Seeds trained one after another (PPO) are at different iterations while the run goes on: the metric
        # is over the seeds at the furthest one, the others are named below.
        furthest = max(iters[-1] for iters, _, _ in by_seed.values())
        ahead = {s: c for s, c in by_seed.items() if c[0][-1] == furthest}
        behind += [f"seed {s} ({label}) at iteration {int(c[0][-1])}" for s, c in by_seed.items() if s not in ahead]
        per_seed = np.array([final_performance(iters, returns, total_iterations)
                             for iters, returns, _ in ahead.values()])
        iters, _, steps = next(iter(ahead.values()))
        lines.append(
            f"| {label} | {len(per_seed)} | {', '.join(f'{v:.1f}' for v in per_seed)} | "
            f"{per_seed.mean():.1f} +- {per_seed.std():.1f} | "
            f"{np.mean([returns[-1] for _, returns, _ in ahead.values()]):.1f} | {int(iters[-1])} | {int(steps[-1])} |"
        )
    if behind:
        lines += ["", f"Not yet in the table (still training): {', '.join(behind)}."]
    wall = wall_clock_summary(timing)
    if wall:
        lines += ["", wall]
    return "\n".join(lines) + "\n"


def _seed_curves(rows: Iterable[dict]) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """label -> seed -> its own (iterations (P_s,), eval returns (P_s,), env_steps (P_s,)), in iteration order;
    a blank return (a held run) as NaN."""
    points: dict[str, dict[int, dict]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        points[r["label"]][r["seed"]][r["iteration"]] = r
    return {label: {seed: (np.array(sorted(by_iter)),
                           np.array([by_iter[i]["eval_return"] for i in sorted(by_iter)], dtype=float),
                           np.array([by_iter[i]["env_steps"] for i in sorted(by_iter)]))
                    for seed, by_iter in sorted(by_seed.items())}
            for label, by_seed in points.items()}


# ------------------------------------------------------------------ across run directories
DEFAULT_ALGO = "dacer"  # a run whose config.yaml has no `algo` key
ALGO_NAMES = {"dacer": "DACER", "sac": "SAC", "dsac": "DSAC", "dsac-t": "DSAC-T", "dsac_t": "DSAC-T",
              "dsact": "DSAC-T", "td3": "TD3", "ddpg": "DDPG", "trpo": "TRPO", "ppo": "PPO"}
TABLE_FORMATS = ("markdown", "latex")
X_AXES = ("iterations", "env_steps")
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
_NEEDED_COLUMNS = ("label", "seed", "iteration", "env_steps", "eval_return")

GroupKey = tuple[str, str, str]  # (task, algo, grid label), e.g. ("Hopper-v5", "dacer", "default")


@dataclasses.dataclass(frozen=True)
class RunResults:
    """What `mjx-dacer table` and `plot` read of one run directory.

    Attributes:
      path: the run directory.
      task: config.yaml's `env`, e.g. "Hopper-v5".
      algo: config.yaml's `algo` (lower case), "dacer" when the key is absent.
      total_iterations: config.yaml's `total_iterations` (the metric's last 10% are relative to it).
      seed_offset: config.yaml's `seed`; the row seed s ran with PRNGKey(seed_offset + s).
      rows: metrics.csv's evaluation rows (`read_rows`); a held run's blank eval_return as NaN.
      wall_seconds: (run, iteration) -> timing.csv's wall clock at that evaluation (run None: every run);
        empty for a run directory without timing.csv.
      settings: the run's config (`config.to_dict`), to tell apart runs of one group that share seeds.
    """

    path: pathlib.Path
    task: str
    algo: str
    total_iterations: int
    seed_offset: int
    rows: tuple[dict, ...]
    wall_seconds: Mapping[tuple[int | None, int], float | None] = dataclasses.field(default_factory=dict)
    settings: Mapping[str, object] = dataclasses.field(default_factory=dict)

    def wall_clock(self, row: Mapping) -> float:
        """The wall clock (s) of the chunk that ended with metrics.csv row `row`; NaN where not recorded."""
        for key in ((row["run"], row["iteration"]), (None, row["iteration"])):
            if self.wall_seconds.get(key) is not None:
                return float(self.wall_seconds[key])
        return math.nan


@dataclasses.dataclass(frozen=True)
class SeedCurve:
    """One seed's evaluation curve from one run directory.

    Attributes:
      source: the run directory.
      seed: the PRNG seed (config `seed` + the row's seed): what runs are pooled by.
      total_iterations: the run's `total_iterations`.
      iterations, env_steps, returns: (P,) per evaluation point, in iteration order; returns are NaN
        where the divergence guard froze the run.
      wall_seconds: (P,) the run's wall clock at each evaluation (timing.csv); NaN where not recorded.
    """

    source: pathlib.Path
    seed: int
    total_iterations: int
    iterations: np.ndarray
    env_steps: np.ndarray
    returns: np.ndarray
    wall_seconds: np.ndarray | None = None

    def metric(self) -> float:
        """The paper's Table 1 metric of this seed (`final_performance`); NaN if its window holds a NaN."""
        return float(final_performance(self.iterations, self.returns, self.total_iterations))


@dataclasses.dataclass(frozen=True)
class Cell:
    """One Table 1 entry: per_seed (n,) the finite per-seed metrics; excluded: seeds whose metric is NaN;
    behind: seeds still training, short of the group's furthest evaluation (seeds trained one after another)."""

    per_seed: np.ndarray
    excluded: int
    behind: int = 0

    @property
    def mean(self) -> float:
        return float(self.per_seed.mean()) if self.per_seed.size else math.nan

    @property
    def std(self) -> float:
        """Standard deviation over seeds, ddof=0 (as summary.md)."""
        return float(self.per_seed.std()) if self.per_seed.size else math.nan


def open_run(path: str | pathlib.Path) -> RunResults:
    """Read one run directory's config.yaml and metrics.csv; ConfigError (one line) if either is unusable."""
    run_dir = RunDir(pathlib.Path(path))
    run_dir.require("pass directories written by `mjx-dacer train` or `mjx-dacer sweep`")
    try:
        raw = yaml.safe_load(run_dir.config.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{run_dir.config} is not valid YAML ({type(e).__name__}); is {path} a run directory?") \
            from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{run_dir.config} does not hold a config mapping; is {path} a run directory?")
    try:
        _, config, _ = RunDir.open(run_dir.path)
    except ConfigError as e:
        raise ConfigError(f"{run_dir.config}: {str(e).splitlines()[0]}") from None
    if not run_dir.metrics.is_file():
        raise ConfigError(f"{path} has no metrics.csv (has its first chunk finished?)")
    try:
        with run_dir.metrics.open(newline="") as f:
            header = next(csv.reader(f), [])
    except (UnicodeDecodeError, csv.Error):
        read_rows(run_dir.metrics)  # raises the damaged file's one-line error
        raise
    missing = [c for c in _NEEDED_COLUMNS if c not in header]
    if missing:
        raise ConfigError(f"{run_dir.metrics} lacks the column(s) {', '.join(missing)}; is it a run's metrics.csv?")
    # A held run's rows have a blank eval_return: kept, as NaN (its seed is then left out of the table).
    rows = tuple({**r, "eval_return": math.nan if r["eval_return"] is None else float(r["eval_return"])}
                 for r in read_rows(run_dir.metrics) if isinstance(r["eval_return"], (int, float, type(None))))
    if not rows:
        raise ConfigError(f"{run_dir.metrics} has no evaluation rows (no eval_return values yet)")
    wall = {}
    if run_dir.timing.is_file():
        wall = {(r["run"], r["iteration"]): r["wall_seconds"] for r in read_rows(run_dir.timing)}
    return RunResults(path=run_dir.path, task=config.env, algo=str(raw.get("algo", DEFAULT_ALGO)).lower(),
                      total_iterations=config.total_iterations, seed_offset=config.seed, rows=rows,
                      wall_seconds=wall, settings=to_dict(config))


def open_runs(paths: Iterable[str | pathlib.Path]) -> list[RunResults]:
    """`open_run` for each path, each directory once (a path given twice is read once)."""
    seen, out = set(), []
    for p in paths:
        key = pathlib.Path(p).resolve()
        if key not in seen:
            seen.add(key)
            out.append(open_run(p))
    return out


def pool_by_seed(runs: Sequence[RunResults]) -> dict[GroupKey, list[SeedCurve]]:
    """(task, algo, grid label) -> its seeds' curves, pooled over run directories, sorted by seed.

    A seed is the PRNG seed (config `seed` + metrics.csv's seed). Directories of one group
    with distinct seeds are pooled (seeds trained separately). Where two of them hold the
    same seed, they are separate experiments (pooled, that seed would count twice: e.g.
    `ablate`'s panels, or one task trained twice from seed 0), so that group is split by
    config, and by directory where configs repeat: see `_distinct_labels`.
    """
    entries = []  # (group key, PRNG seed, run, {iteration: row})
    for run in runs:
        points: dict[tuple[str, int], dict[float, dict]] = defaultdict(dict)
        for r in run.rows:
            points[(str(r["label"]), int(r["seed"]))][r["iteration"]] = r  # a repeated iteration: the last row
        entries += [((run.task, run.algo, label), run.seed_offset + s, run, by_iter)
                    for (label, s), by_iter in sorted(points.items())]
    members: dict[GroupKey, dict[pathlib.Path, tuple[RunResults, list[int]]]] = defaultdict(dict)
    for key, seed, run, _ in entries:
        members[key].setdefault(run.path, (run, []))[1].append(seed)
    relabel = {}
    for key, held in members.items():
        seeds = [s for _, run_seeds in held.values() for s in run_seeds]
        if len(set(seeds)) < len(seeds):
            relabel[key] = _distinct_labels(key[2], list(held.values()))
    groups: dict[GroupKey, list[SeedCurve]] = {}
    for key, seed, run, by_iter in entries:
        if key in relabel:
            key = (*key[:2], relabel[key][run.path])
        iters = sorted(by_iter)
        groups.setdefault(key, []).append(SeedCurve(
            source=run.path, seed=seed, total_iterations=run.total_iterations, iterations=np.array(iters),
            env_steps=np.array([by_iter[i]["env_steps"] for i in iters]),
            returns=np.array([by_iter[i]["eval_return"] for i in iters], dtype=float),
            wall_seconds=np.array([run.wall_clock(by_iter[i]) for i in iters], dtype=float)))
    for curves in groups.values():
        curves.sort(key=lambda c: c.seed)
    return groups


def _distinct_labels(label: str, runs: Sequence[tuple[RunResults, list[int]]]) -> dict[pathlib.Path, str]:
    """A label per run directory of one group (`runs`: each with its PRNG seeds) that holds a seed twice.

    Runs with one config (its `seed` offset aside) stay pooled, under `label` (left out if "default") and
    the config keys whose values differ between them and the others (e.g. "diffusion_steps=10"). Where
    such a part still holds a seed twice (the same config trained twice), each directory is its own:
    the label gains the folder's name, or its path where names repeat too.
    """
    def config(run):
        return {k: v for k, v in run.settings.items() if k != "seed"}

    def text(v):
        return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else f"{v:g}" if isinstance(v, float) else str(v)

    keys = sorted({k for run, _ in runs for k in config(run)})
    differing = [k for k in keys if len({repr(config(run).get(k)) for run, _ in runs}) > 1]
    base = [] if label == "default" else [label]
    parts: dict[str, list[tuple[RunResults, list[int]]]] = defaultdict(list)
    for run, seeds in runs:
        parts[", ".join(base + [f"{k}={text(config(run).get(k))}" for k in differing])].append((run, seeds))
    names = [run.path.name for run, _ in runs]
    labels = {}
    for part, members in parts.items():
        seeds = [s for _, held in members for s in held]
        for run, _ in members:
            if len(set(seeds)) == len(seeds):
                labels[run.path] = part
            else:
                where = run.path.name if names.count(run.path.name) == 1 else str(run.path)
                labels[run.path] = f"{part} ({where})" if part else where
    return labels


def table_cell(curves: Sequence[SeedCurve]) -> Cell:
    """The Table 1 entry of one group: each seed's metric, seeds with a NaN metric (frozen runs) left out, and
    seeds whose run directory holds a seed further on (PPO trains its seeds one after another) left out and
    counted as behind: the metric of a seed that has just started is not its result."""
    furthest = defaultdict(int)
    for c in curves:
        furthest[c.source] = max(furthest[c.source], int(c.iterations[-1]))
    ahead = [c for c in curves if int(c.iterations[-1]) == furthest[c.source]]
    values = np.array([c.metric() for c in ahead], dtype=float)
    finite = values[np.isfinite(values)]
    return Cell(per_seed=finite, excluded=int(values.size - finite.size), behind=len(curves) - len(ahead))


def task_order(tasks: Iterable[str]) -> list[str]:
    """Tasks in the paper's Table 1 order (by `paper.paper_task`), then the others (MultiGoal) by name."""
    def rank(task):
        name = paper.paper_task(task)
        return (paper.TASKS.index(name), task) if name else (len(paper.TASKS), task)
    return sorted(set(tasks), key=rank)


def _algo_rank(algo: str) -> tuple:
    column = paper.PAPER_COLUMN.get(algo)
    return (paper.ALGORITHMS.index(column) if column else len(paper.ALGORITHMS), algo)


def columns(keys: Iterable[GroupKey]) -> list[tuple[str, str, str]]:
    """(algo, grid label, heading) per column: algorithms in the paper's order, each one's labels by name
    ("default" first); the heading names the label only when the algorithm has several."""
    labels: dict[str, set[str]] = defaultdict(set)
    for _, algo, label in keys:
        labels[algo].add(label)
    out = []
    for algo in sorted(labels, key=_algo_rank):
        name = ALGO_NAMES.get(algo, algo)
        for label in sorted(labels[algo], key=lambda v: (v != "default", _natural(v))):
            out.append((algo, label, name if len(labels[algo]) == 1 else f"{name} [{label}]"))
    return out


def _natural(text: str) -> tuple:
    """Sort key that orders the numbers in labels by value: "diffusion_steps=5" before "diffusion_steps=10"."""
    return tuple(float(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+(?:\.\d+)?)", text)))


def _latex_escape(text: str) -> str:
    specials = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(specials.get(ch, ch) for ch in text)


def _pm(mean: float, std: float, digits: int, fmt: str) -> str:
    if fmt == "latex":
        return f"${mean:.{digits}f} \\pm {std:.{digits}f}$"
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def cell_text(cell: Cell | None, fmt: str = "markdown") -> str:
    """'mean +- std (n seeds)' (LaTeX: with $\\pm$); '-' for no runs; NaN-excluded seeds counted."""
    if cell is None:
        return "-"
    n = cell.per_seed.size
    count = (f"{n} seed{'' if n == 1 else 's'}" + (f"; {cell.excluded} NaN excluded" if cell.excluded else "")
             + (f"; {cell.behind} still training" if cell.behind else ""))
    value = _pm(cell.mean, cell.std, 1, fmt) if n else "-"
    return f"{value} ({count})"


def results_table(groups: Mapping[GroupKey, Sequence[SeedCurve]], fmt: str = "markdown",
                  with_paper: bool = False) -> str:
    """The paper's Table 1 for `groups` (from `pool_by_seed`): rows = tasks, columns = algorithms.

    fmt: "markdown" or "latex". with_paper adds, after each algorithm's columns,
    the paper's value (`paper.reference`; "-" where the paper has none).
    Returns the caption line(s) and the table, ending in a newline.
    """
    if fmt not in TABLE_FORMATS:
        raise ConfigError(f"unknown table format '{fmt}'; use one of {', '.join(TABLE_FORMATS)}")
    cells = {key: table_cell(curves) for key, curves in groups.items()}
    tasks = task_order(k[0] for k in groups)
    cols = columns(groups)
    headings, getters = ["task"], []
    for i, (algo, label, heading) in enumerate(cols):
        headings.append(heading)
        getters.append(lambda task, a=algo, lb=label: cell_text(cells.get((task, a, lb)), fmt))
        last_of_algo = i + 1 == len(cols) or cols[i + 1][0] != algo
        if with_paper and last_of_algo and algo in paper.PAPER_COLUMN:
            headings.append(f"{ALGO_NAMES.get(algo, algo)} (paper)")
            getters.append(lambda task, a=algo: "-" if (ref := paper.reference(task, a)) is None
                           else _pm(ref[0], ref[1], 0, fmt))
    body = [[task] + [get(task) for get in getters] for task in tasks]

    excluded = sum(c.excluded for c in cells.values())
    caption = ("Table 1 metric: per seed, the highest evaluation return within the last 10% of iterations "
               "(the last evaluation if none falls there); each cell: mean +- std (ddof=0) over seeds, "
               "run directories of the same task and algorithm pooled by seed.")
    if with_paper:
        caption += (" Paper: DACER Table 1, Gym v3 tasks, 5 seeds, 1.5M iterations; ours: the task versions "
                    "named in the first column.")
    if excluded:
        caption += (f" {excluded} seed{'' if excluded == 1 else 's'} excluded: NaN evaluation returns in the last "
                    "10% (frozen by the divergence guard).")
    if fmt == "markdown":
        lines = [caption, "", "| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines) + "\n"
    esc = _latex_escape
    lines = [r"\begin{table}[t]", r"\centering",
             r"\caption{" + esc(caption).replace("+- ", r"$\pm$ ") + "}",
             r"\begin{tabular}{l" + "c" * (len(headings) - 1) + "}", r"\hline",
             " & ".join(esc(h) for h in headings) + r" \\", r"\hline"]
    lines += [" & ".join([esc(row[0])] + row[1:]) + r" \\" for row in body]
    lines += [r"\hline", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def first_reach(curve: SeedCurve, threshold: float) -> int | None:
    """Index of the first evaluation of `curve` with a return >= threshold; None if none reaches it."""
    hits = np.flatnonzero(curve.returns >= threshold)  # NaN (a frozen run) never counts
    return int(hits[0]) if hits.size else None


def reach_table(groups: Mapping[GroupKey, Sequence[SeedCurve]], threshold: float) -> str:
    """Per seed, when its evaluation return first reached `threshold`: iteration, env steps and the wall
    clock (timing.csv: compiles included, summed over a resumed run's sessions). Markdown, ending in a newline.
    """
    lines = [f"First evaluation with a return >= {threshold:g}, per seed. Wall clock: the run's, at the end of "
             "that evaluation's chunk (program build and compiles included; a resumed run's sessions summed; "
             "'-' where the run kept no timing.csv). Seeds of one program share its wall clock.", "",
             "| task | algorithm | grid point | seed | iteration | env steps | wall clock | return there | best |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = {task: i for i, task in enumerate(task_order(k[0] for k in groups))}
    for key in sorted(groups, key=lambda k: (order[k[0]], _algo_rank(k[1]), k[2])):
        task, algo, label = key
        for c in groups[key]:
            i = first_reach(c, threshold)
            best = f"{np.nanmax(c.returns):.1f}" if np.isfinite(c.returns).any() else "-"
            head = f"| {task} | {ALGO_NAMES.get(algo, algo)} | {label} | {c.seed} |"
            if i is None:
                lines.append(f"{head} not reached | | | | {best} |")
                continue
            known = c.wall_seconds is not None and np.isfinite(c.wall_seconds[i])
            wall = duration(c.wall_seconds[i]) if known else "-"
            lines.append(f"{head} {int(c.iterations[i])} | {int(c.env_steps[i])} | {wall} | {c.returns[i]:.1f} "
                         f"| {best} |")
    return "\n".join(lines) + "\n"


def aligned_returns(curves: Sequence[SeedCurve], x: str = "iterations") -> tuple[np.ndarray, np.ndarray]:
    """xs (P,) the x values (`x`: iterations or env_steps) all seeds were evaluated at; returns (S, P)."""
    if x not in X_AXES:
        raise ConfigError(f"unknown x axis '{x}'; use one of {', '.join(X_AXES)}")
    per_seed = [dict(zip(getattr(c, x).tolist(), c.returns.tolist())) for c in curves]
    xs = sorted(set.intersection(*(set(d) for d in per_seed)))
    if not xs:
        raise ConfigError(f"the runs in {', '.join(sorted({str(c.source) for c in curves}))} share no {x} value "
                          "at which all were evaluated")
    return np.array(xs), np.array([[d[v] for v in xs] for d in per_seed], dtype=float)


def finite_mean(values: np.ndarray) -> np.ndarray:
    """values (S, P) -> (P,) mean over the finite seeds of each point (NaN where there are none)."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def bootstrap_ci(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                 seed: int = BOOTSTRAP_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over seeds, per point.

    values: (S, P) returns per seed and point; each point uses its finite seeds
    only (a frozen run's NaN is left out). Returns (lo, hi), each (P,); NaN
    where fewer than 2 seeds are finite. Where all S seeds are finite it equals

        idx = np.random.default_rng(seed).integers(0, S, size=(resamples, S))
        np.percentile(values[idx].mean(axis=1), [2.5, 97.5], axis=0)   # level 0.95
    """
    values = np.asarray(values, dtype=float)
    _, num_points = values.shape
    lo, hi = np.full(num_points, np.nan), np.full(num_points, np.nan)
    finite = np.isfinite(values)
    by_pattern: dict[tuple, list[int]] = defaultdict(list)
    for j in range(num_points):
        by_pattern[tuple(finite[:, j].tolist())].append(j)
    q = [50 * (1 - level), 50 * (1 + level)]
    for pattern, cols in by_pattern.items():
        rows = np.flatnonzero(pattern)
        if rows.size < 2:
            continue
        sub = values[np.ix_(rows, cols)]
        idx = np.random.default_rng(seed).integers(0, rows.size, size=(resamples, rows.size))
        lo[cols], hi[cols] = np.percentile(sub[idx].mean(axis=1), q, axis=0)
    return lo, hi


LEGEND_INSIDE = 4  # the most lines a panel's legend holds inside the axes without hiding them


def plot_by_task(groups: Mapping[GroupKey, Sequence[SeedCurve]], path: pathlib.Path, x: str = "iterations"):
    """Write a PNG with one subplot per task and one line per algorithm (and grid label, if several).

    Each line is the mean over seeds with a bootstrap 95% CI of the mean as a
    band (none for a single seed); x is iterations or env_steps.
    Returns the matplotlib Figure (its `axes`: one per task, in `task_order`).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if x not in X_AXES:
        raise ConfigError(f"unknown x axis '{x}'; use one of {', '.join(X_AXES)}")
    tasks = task_order(k[0] for k in groups)
    ncols = min(3, len(tasks))
    nrows = -(-len(tasks) // ncols)
    cols = columns(groups)
    # Many lines (an `ablate` folder): the legend goes below each panel, which grows to hold it.
    most = max(sum((task, algo, label) in groups for algo, label, _ in cols) for task in tasks)
    below = most > LEGEND_INSIDE
    fig = Figure(figsize=(5.2 * ncols, (3.8 + (0.6 + 0.17 * most if below else 0)) * nrows + 0.6))
    FigureCanvasAgg(fig)
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for algo, label, heading in cols:
            curves = groups.get((task, algo, label))
            if not curves:
                continue
            xs, returns = aligned_returns(curves, x)
            n = len(curves)
            frozen = int((~np.isfinite(returns)).any(axis=1).sum())
            note = f"{n} seed{'' if n == 1 else 's'}" + (f", {frozen} frozen" if frozen else "")
            (line,) = ax.plot(xs, finite_mean(returns), marker="o", markersize=2.5, label=f"{heading} ({note})")
            if n > 1:
                lo, hi = bootstrap_ci(returns)
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.25, linewidth=0)
        ax.set_title(task)
        ax.set_xlabel("iterations (after the warm-up)" if x == "iterations" else "env steps (warm-up included)")
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
        if below:
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
        else:
            ax.legend(fontsize=8)
    # Two lines: with a single task the figure is too narrow for one.
    fig.suptitle(f"Evaluation return: mean over seeds; band: bootstrap 95% CI of the mean\n"
                 f"({BOOTSTRAP_RESAMPLES} resamples over seeds; no band with one seed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # nothing cropped, whatever the title's length
    return fig
