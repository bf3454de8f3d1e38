"""The run directory of an on-policy baseline (PPO, TRPO): its trainer's reports through the shared writers.

On-policy algorithms do not fit the shared compiled program (replay buffer,
warm-up). Each has its own trainer (`Algorithm`), which reports every
evaluation point through a brax-style `progress_fn(env_steps, metrics)` (one
metrics mapping per seed it trains), and `run` turns those reports into an
ordinary run directory with the writers of the off-policy algorithms
(`RunDir`, the sinks, `report`), so `mjx-dacer table` and `plot` read it
beside DACER runs:

    RUN_DIR/
      config.yaml              the Config (algo: ppo or trpo), seeds and grid (`RunDir.create`)
      ALGO.yaml                the algorithm's own settings and what its trainer was given
      metrics.csv, tb/         one row per evaluation point and seed (`sinks.CsvSink`, `sinks.TensorBoardSink`)
      timing.csv               the wall clock of the seeds trained together at each evaluation point
      curves.png, summary.md   `sinks.ReportSink`
      ALGO_params_seed{s}.pkl  brax's (normalizer, policy, value) params of seed s after training,
                               `brax.io.model.save_params` (a pickle); `mjx-dacer eval` does not read them

One iteration is one network update on `transitions_per_iteration` fresh
transitions (DACER_SPEC §9: "iterations" on the on-policy curves count
updates), so `env_steps` = `iteration * transitions_per_iteration` exactly;
there is no warm-up. Evaluation points are iteration 0 (the untrained policy)
and every `eval_interval` iterations: `eval_episodes` deterministic episodes
(the tanh-Gaussian's mode) of at most the task's `episode_length` steps.
An algorithm trains its seeds one after another (PPO: brax's trainer takes
one seed) or all in one vmapped program (TRPO), on one device.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import yaml
from brax.envs.base import Env, State, Wrapper
from brax.io import model

from mjx_dacer import envs, sinks
from mjx_dacer.config import Config, ConfigError
from mjx_dacer.rundir import RunDir, RunSpec

# metrics.csv's evaluation columns (as `sinks.LEADING_COLUMNS`) -> brax's evaluator metrics. An algorithm
# adds its losses after them; the untrained policy's evaluation has none (None: a blank in the CSV).
EVAL_COLUMNS = {
    "eval_return": "eval/episode_reward",
    "eval_return_std": "eval/episode_reward_std",
    "eval_length": "eval/avg_episode_length",
}

# progress_fn(env_steps, metrics): how a trainer reports iteration 0 and every epoch of eval_interval iterations,
# env_steps per seed and one metrics mapping per seed it trains (in the order of its seeds).
ProgressFn = Callable[[int, Sequence[Mapping[str, Any]]], None]


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """What `run` needs of one on-policy algorithm.

    Attributes:
      name: `Config.algo`, and the prefix of the run directory's NAME.yaml and NAME_params_seed{s}.pkl.
      title: who trains it, for the summary and the first progress line ("brax PPO").
      columns: metrics.csv's loss columns -> the trainer's metrics, after `EVAL_COLUMNS`.
      transitions_per_iteration: env steps per network update, over all environments.
      settings: what NAME.yaml records (the algorithm's settings and what its trainer is given).
      seeds_at_once: whether `train` takes all the seeds of a run together (in one vmapped program) or one.
      train: train(seeds, progress_fn) -> params: trains these seeds (config.seed + s) on the task the
        algorithm was made for, reporting every evaluation point of all of them to progress_fn; one params
        per seed, as `brax.io.model.save_params` writes them.
    """

    name: str
    title: str
    columns: Mapping[str, str]
    transitions_per_iteration: int
    settings: Mapping[str, Any]
    seeds_at_once: bool
    train: Callable[[Sequence[int], ProgressFn], Sequence[Any]]


def check_config(config: Config) -> None:
    """The refusals every on-policy trainer shares: one line each, naming the key and the fix."""
    algo = config.algo
    if config.warmup_steps:
        raise ConfigError(f"{algo} has no warm-up (it is on-policy), got warmup_steps {config.warmup_steps}; "
                          f"set warmup_steps=0 (--algo {algo} does)")
    if config.checkpoint_interval != 1:
        raise ConfigError(f"{algo} writes no checkpoints (its trainer holds its state in memory and cannot resume "
                          f"exactly), got checkpoint_interval {config.checkpoint_interval}; drop the key")
    if config.total_iterations % config.eval_interval:
        raise ConfigError(f"{algo} evaluates after equal epochs of eval_interval iterations: total_iterations "
                          f"({config.total_iterations}) must be a multiple of eval_interval ({config.eval_interval})")


def evaluation_row(run: int, seed: int, iteration: int, env_steps: int, metrics: Mapping[str, Any],
                   columns: Mapping[str, str]) -> dict:
    """metrics.csv's row for one evaluation: the id columns, the evaluation, then `columns` (None where absent)."""
    values = {column: float(metrics[key]) if key in metrics else None
              for column, key in {**EVAL_COLUMNS, **columns}.items()}
    return {"run": run, "label": "default", "seed": seed, "iteration": iteration, "env_steps": env_steps, **values}


def progress_line(algo: str, row: dict, total_iterations: int, elapsed: float) -> str:
    """'[ppo seed 0] iter 10/100 env steps 20000 | eval return -123.4 | elapsed 0m42s'."""
    return (f"[{algo} seed {row['seed']}] iter {row['iteration']}/{total_iterations} env steps {row['env_steps']} | "
            f"eval return {row['eval_return']:.1f} | elapsed {sinks.duration(elapsed)}")


class KeepMetricKeys(Wrapper):
    """A task whose `step` keeps every metric key the state came in with.

    Our tasks' `step` returns only the metrics it computes. brax's evaluation
    wrapper adds a "reward" metric at reset and then scans over `step`, and a
    scan needs the same keys after a step as before; so the keys a wrapper
    added are carried over (their values are the wrapper's to update).
    """

    def step(self, state: State, action: jax.Array) -> State:
        nxt = self.env.step(state, action)
        return nxt.replace(metrics={**state.metrics, **nxt.metrics})


@dataclasses.dataclass
class _Clock:
    """The run's progress: evaluation points done of all (over all groups of seeds), since `started`."""

    started: float
    total: int
    done: int = 0


class _Recorder:
    """The progress_fn of the seeds trained together (all of a run's, or one): each evaluation point becomes
    one `sinks.ChunkResult` (a metrics.csv row per seed) and a progress line per seed.

    The trainer calls it at iteration 0 and after every epoch of `eval_interval`
    iterations, so the k-th call is iteration k * eval_interval; its env step count
    is checked against that. timing.csv's wall clock starts with the recorder, when
    its seeds start training; its `run` is blank where the row holds for all of the
    run's seeds (trained in one program) and the run's number where seeds train one
    after another.
    """

    def __init__(self, algorithm: Algorithm, group: Sequence[tuple[int, int]], config: Config,
                 sinks_: Sequence[sinks.Sink], progress: sinks.ProgressFn, clock: _Clock):
        self.algorithm, self.group, self.config = algorithm, group, config
        self.sinks, self.progress, self.clock = sinks_, progress, clock
        self.timing_run = None if algorithm.seeds_at_once else group[0][0]
        self.evaluations = 0
        self.last_time, self.last_iteration = time.perf_counter(), 0
        self.group_started = self.last_time
        self.rows: list[dict] = []

    def __call__(self, env_steps: int, metrics: Sequence[Mapping[str, Any]]) -> None:
        per_iteration = self.algorithm.transitions_per_iteration
        iteration = self.evaluations * self.config.eval_interval
        expected = iteration * per_iteration
        if int(env_steps) != expected or len(metrics) != len(self.group):
            raise RuntimeError(f"{self.algorithm.title} reported {env_steps} env steps for {len(metrics)} seed(s) at "
                               f"evaluation {self.evaluations}, expected {expected} (iteration {iteration}) for "
                               f"{len(self.group)}")
        rows = [evaluation_row(run, seed, iteration, expected, seed_metrics, self.algorithm.columns)
                for (run, seed), seed_metrics in zip(self.group, metrics)]
        now = time.perf_counter()
        seconds = now - self.last_time
        clock = self.clock
        clock.done += 1
        advanced = iteration - self.last_iteration
        result = sinks.ChunkResult(
            chunk=clock.done, num_chunks=clock.total, iteration=iteration, env_steps=expected, warmup=False,
            seconds=seconds, eta_seconds=(now - clock.started) / clock.done * (clock.total - clock.done),
            env_steps_per_second=advanced * per_iteration * len(rows) / seconds,
            updates_per_second=advanced * len(rows) / seconds, rows=rows,
            # The trainer compiles inside its call: compile_seconds is not known (the first evaluation's time has it).
            timing={"run": self.timing_run, "chunk": clock.done, "iteration": iteration, "env_steps": expected,
                    "wall_seconds": round(now - self.group_started, 3), "chunk_seconds": round(seconds, 3),
                    "compile_seconds": None, "session": 1},
        )
        for sink in self.sinks:
            sink.write(result)
        self.rows.extend(rows)
        for row in rows:
            self.progress(progress_line(self.algorithm.name, row, self.config.total_iterations, now - clock.started))
        self.evaluations += 1
        self.last_time, self.last_iteration = now, iteration


def run(config: Config, out: str | pathlib.Path, algorithm: Callable[[Config, Env], Algorithm], *,
        seeds: int | Sequence[int] = 1, progress_fn: sinks.ProgressFn = print) -> list[dict]:
    """Train an on-policy algorithm for each seed (one after another or together) and write the run directory `out`.

    Args:
      config: a checked Config (the algorithm's module checks it first).
      out: the run directory; absent or empty.
      algorithm: (config, task wrapped in `KeepMetricKeys`) -> the `Algorithm` to run.
      seeds: how many seeds (0..N-1), or which; seed s trains with seed config.seed + s.
      progress_fn: receives every progress line.
    Returns:
      metrics.csv's rows: one dict per evaluation point and seed.
    Raises:
      ConfigError: bad seeds, or `out` holds files (before anything is written).
    """
    spec = RunSpec(grid=({},), seeds=tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds))
    spec.validate(config)
    out = pathlib.Path(out)
    RunDir.check_new(out)
    env = KeepMetricKeys(envs.make(config.env, physics=config.physics))
    algo = algorithm(config, env)

    run_dir = RunDir.create(out, config, spec)
    (run_dir.path / f"{algo.name}.yaml").write_text(yaml.safe_dump(dict(algo.settings), sort_keys=False))
    outputs: list[sinks.Sink] = [
        sinks.CsvSink(run_dir), sinks.TensorBoardSink(run_dir),
        sinks.ReportSink(run_dir, f"{algo.name.upper()} on {config.env}", config.total_iterations),
    ]
    for sink in outputs:
        sink.start([])
    per_seed = config.total_iterations // config.eval_interval + 1  # + the untrained policy's
    together = f"{len(spec.seeds)} seed(s) " + ("in one program" if algo.seeds_at_once else "one after another")
    progress_fn(f"{config.env}: {algo.title}, {together}, {config.total_iterations} "
                f"iterations x {algo.transitions_per_iteration} transitions ({config.num_envs} envs), "
                f"{per_seed} evaluations per seed, on 1 {jax.default_backend()} device; compiling...")
    runs = list(enumerate(spec.seeds))
    groups = [runs] if algo.seeds_at_once else [[r] for r in runs]
    clock, rows = _Clock(started=time.perf_counter(), total=len(groups) * per_seed), []
    try:
        for group in groups:
            recorder = _Recorder(algo, group, config, outputs, progress_fn, clock)
            params = algo.train([config.seed + seed for _, seed in group], recorder)
            for (_, seed), seed_params in zip(group, params):
                model.save_params(str(run_dir.path / f"{algo.name}_params_seed{seed}.pkl"),
                                  jax.device_get(seed_params))
            rows.extend(recorder.rows)
    finally:
        for sink in outputs:
            sink.close()
    return rows


__all__ = ["Algorithm", "EVAL_COLUMNS", "KeepMetricKeys", "ProgressFn", "check_config", "evaluation_row",
           "progress_line", "run"]
