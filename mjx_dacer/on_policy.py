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
      metrics.csv, tb/         one row per evaluation point and seed (`sinks.CsvSink`, `sinks.TensorBoardSink`;
                               with `track`, W&B too: `sinks.WandbSink`)
      timing.csv               the wall clock of the seeds trained together at each evaluation point
      curves.png, summary.md   `sinks.ReportSink`
      ALGO_params_seed{s}.pkl  brax's (normalizer, policy, value) params of seed s, in the pickle of
                               `brax.io.model.save_params`, written atomically after training (and with
                               every checkpoint)
      checkpoints/N/           an algorithm with a `Program` (TRPO): the whole training state of every
                               seed after N epochs, with the rows so far (`checkpoint.Checkpointer`)

One iteration is one network update on `transitions_per_iteration` fresh
transitions (DACER_SPEC §9: "iterations" on the on-policy curves count
updates), so `env_steps` = `iteration * transitions_per_iteration` exactly;
there is no warm-up. Evaluation points are iteration 0 (the untrained policy)
and every `eval_interval` iterations: `eval_episodes` deterministic episodes
(the tanh-Gaussian's mode) of at most the task's `episode_length` steps.
An algorithm trains its seeds one after another (PPO: brax's trainer takes
one seed and holds its state until it returns) or all in one vmapped
`Program` that `run` drives epoch by epoch (TRPO): such a run checkpoints
every `checkpoint_interval` epochs and at its end, stops after the epoch in
progress on SIGINT / SIGTERM (checkpointing it), and resumes exactly
(`run(..., resume=True)`, `mjx-dacer train --resume`), also to train longer.
A trainer that runs each seed to its end in one call (PPO) writes no
checkpoints: a signal stops it at once, and a resume keeps the seeds that
finished (params saved, every evaluation in metrics.csv) and trains the others
from their start. A seed's training depends on its seed alone, so the resumed
run ends with the rows and params of an uninterrupted one, in more time.
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import pickle
import signal
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
import yaml
from brax.envs.base import Env, State, Wrapper

from mjx_dacer import envs, report, sinks
from mjx_dacer.artifact_io import write_atomically
from mjx_dacer.checkpoint import Checkpointer, Restored
from mjx_dacer.config import Config, ConfigError
from mjx_dacer.errors import SIGNAL_EXIT, RunStopped
from mjx_dacer.rundir import RunDir, RunSpec, resumed_config

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
class Program:
    """An algorithm whose seeds train together in one compiled program, which `run` drives one epoch of
    `eval_interval` iterations at a time: it can checkpoint the whole state between epochs and resume exactly.

    The state is a pytree of arrays whose leading axis is the seed, and holds everything the rest of the run
    depends on (parameters, optimiser and normaliser states, environment states, PRNG keys).

    Attributes:
      init: init(seeds) -> the state of these seeds (config.seed + s each) before training.
      epoch: epoch(state) -> (the state after eval_interval more iterations, metrics: name -> (seeds,) array of
        the epoch's means, named as `Algorithm.columns`' values). It may take over (donate) the state's buffers.
      evaluate: evaluate(state, e) -> evaluation point e's metrics (`EVAL_COLUMNS`' values), one mapping per
        seed; e (epochs done) picks its episodes' keys, so a resumed run evaluates as an uninterrupted one.
      params: params(state) -> one params per seed, as `brax.io.model.save_params` writes them.
    """

    init: Callable[[Sequence[int]], Any]
    epoch: Callable[[Any], tuple[Any, Mapping[str, Any]]]
    evaluate: Callable[[Any, int], Sequence[Mapping[str, Any]]]
    params: Callable[[Any], Sequence[Any]]


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """What `run` needs of one on-policy algorithm: a `train` function or a `Program` (exactly one).

    Attributes:
      name: `Config.algo`, and the prefix of the run directory's NAME.yaml and NAME_params_seed{s}.pkl.
      title: who trains it, for the summary and the first progress line ("brax PPO").
      columns: metrics.csv's loss columns -> the trainer's metrics, after `EVAL_COLUMNS`.
      transitions_per_iteration: env steps per network update, over all environments.
      settings: what NAME.yaml records (the algorithm's settings and what its trainer is given).
      train: train(seeds, progress_fn) -> params, for a trainer that runs to its end in one call (brax's PPO,
        one seed per call): trains these seeds (config.seed + s) on the task the algorithm was made for,
        reporting every evaluation point to progress_fn; one params per seed, as `brax.io.model.save_params`
        writes them. It writes no checkpoints (a resume trains the seeds that did not finish again).
      program: the seeds' `Program`, for an algorithm that `run` drives epoch by epoch (TRPO).
    """

    name: str
    title: str
    columns: Mapping[str, str]
    transitions_per_iteration: int
    settings: Mapping[str, Any]
    train: Callable[[Sequence[int], ProgressFn], Sequence[Any]] | None = None
    program: Program | None = None

    def __post_init__(self):
        if (self.train is None) == (self.program is None):
            raise ValueError(f"{self.name}: an Algorithm has a train function or a Program, exactly one")

    @property
    def seeds_at_once(self) -> bool:
        """Whether all the seeds of a run train together (in one vmapped program) rather than one by one."""
        return self.program is not None


def check_config(config: Config, checkpoints: bool) -> None:
    """The refusals every on-policy trainer shares: one line each, naming the key and the fix.

    Args:
      checkpoints: whether the trainer writes checkpoints (has a `Program`); if not, checkpoint_interval is refused.
    """
    algo = config.algo
    if config.warmup_steps:
        raise ConfigError(f"{algo} has no warm-up (it is on-policy), got warmup_steps {config.warmup_steps}; "
                          f"set warmup_steps=0 (--algo {algo} does)")
    if not checkpoints and config.checkpoint_interval != 1:
        raise ConfigError(f"{algo} writes no checkpoints (its trainer holds a seed's state in memory until the seed "
                          f"ends), got checkpoint_interval {config.checkpoint_interval}; drop the key")
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
    """The run's progress: evaluation points done of all (over all groups of seeds), `resumed` of them before this
    session, which started at `started`."""

    started: float
    total: int
    done: int = 0
    resumed: int = 0

    def eta(self, now: float) -> float:
        """Seconds left at this session's speed so far."""
        return (now - self.started) / (self.done - self.resumed) * (self.total - self.done)


class _Recorder:
    """The progress_fn of the seeds trained together (all of a run's, or one): each evaluation point becomes
    one `sinks.ChunkResult` (a metrics.csv row per seed) and a progress line per seed.

    The trainer calls it at iteration 0 and after every epoch of `eval_interval`
    iterations, so the k-th call is iteration k * eval_interval; its env step count
    is checked against that. timing.csv's wall clock starts with the recorder, when
    its seeds start training, and goes on from a restored checkpoint's last row (a
    resume is the next `session`); its `run` is blank where the row holds for all of
    the run's seeds (trained in one program) and the run's number where seeds train
    one after another. `rows` and `timing` hold every row of these seeds so far,
    a restored checkpoint's included.
    """

    def __init__(self, algorithm: Algorithm, group: Sequence[tuple[int, int]], config: Config,
                 sinks_: Sequence[sinks.Sink], progress: sinks.ProgressFn, clock: _Clock,
                 restored: Restored | None = None, session: int | None = None):
        self.algorithm, self.group, self.config = algorithm, group, config
        self.sinks, self.progress, self.clock = sinks_, progress, clock
        self.timing_run = None if algorithm.seeds_at_once else group[0][0]
        self.rows: list[dict] = list(restored.rows) if restored else []
        self.timing: list[dict] = list(restored.timing) if restored else []
        epochs_done = restored.chunks_done if restored else -1  # -1: not even the untrained policy's evaluation
        self.evaluations = epochs_done + 1
        self.last_time, self.last_iteration = time.perf_counter(), max(epochs_done, 0) * config.eval_interval
        self.group_started = self.last_time
        last = self.timing[-1] if self.timing else None
        self.wall_offset = (last["wall_seconds"] or 0.0) if last else 0.0
        self.session = session or (last["session"] + 1 if last else 1)

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
            seconds=seconds, eta_seconds=clock.eta(now), env_steps_per_second=advanced * per_iteration * len(rows) / seconds,
            updates_per_second=advanced * len(rows) / seconds, rows=rows,
            # The trainer compiles inside its call: compile_seconds is not known (the first evaluation's time has it).
            timing={"run": self.timing_run, "chunk": clock.done, "iteration": iteration, "env_steps": expected,
                    "wall_seconds": round(self.wall_offset + now - self.group_started, 3),
                    "chunk_seconds": round(seconds, 3), "compile_seconds": None, "session": self.session},
        )
        for sink in self.sinks:
            sink.write(result)
        self.rows.extend(rows)
        self.timing.append(result.timing)
        for row in rows:
            self.progress(progress_line(self.algorithm.name, row, self.config.total_iterations, now - clock.started))
        self.evaluations += 1
        self.last_time, self.last_iteration = now, iteration


class _Interrupted(BaseException):
    """Raised by `_StopOnSignal(at_once=True)` where the trainer is when SIGINT / SIGTERM arrives. A BaseException,
    as KeyboardInterrupt, so that no `except Exception` inside a library's trainer swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _StopOnSignal:
    """While seeds train: SIGINT / SIGTERM stop the run.

    A `Program` (at_once=False): the first signal asks the run to stop after the epoch in progress
    (checkpointing it); a second one goes to the handler that was there before (Ctrl-C: KeyboardInterrupt,
    stopping at once). A trainer that runs to its end in one call (at_once=True) cannot stop at a point it
    could go on from, so the first signal raises `_Interrupted` at once. Python runs signal handlers between
    bytecodes, so either is acted on when the compiled call in progress returns. Outside the main thread
    (e.g. a notebook's worker) nothing is installed."""

    def __init__(self, at_once: bool = False):
        self.at_once = at_once
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in SIGNAL_EXIT}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame) -> None:
        if self.at_once:
            raise _Interrupted(signum)
        if self.signum is None:
            self.signum = signum
            return
        previous = self.previous[signum]
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL / SIG_IGN: what the process would have done without this handler
            signal.signal(signum, previous)
            signal.raise_signal(signum)


def params_path(run_dir: RunDir, algo: str, seed: int) -> pathlib.Path:
    return run_dir.path / f"{algo}_params_seed{seed}.pkl"


def _save_params(run_dir: RunDir, algo: Algorithm, seeds: Sequence[int], params: Sequence[Any]) -> None:
    """NAME_params_seed{s}.pkl for each seed, atomically, in `brax.io.model.save_params`' format (a pickle)."""
    for seed, seed_params in zip(seeds, params):
        write_atomically(params_path(run_dir, algo.name, seed), pickle.dumps(jax.device_get(seed_params)))


def _drive(algo: Algorithm, config: Config, run_dir: RunDir, spec: RunSpec, recorder: _Recorder,
           checkpointer: Checkpointer, restored: Restored | None) -> None:
    """Train a `Program`'s seeds to config.total_iterations: report every evaluation point, save the params
    and a checkpoint every checkpoint_interval epochs and after the last; stop early on a signal."""
    program, seeds = algo.program, [config.seed + s for s in spec.seeds]
    epochs = config.total_iterations // config.eval_interval
    steps_per_epoch = config.eval_interval * algo.transitions_per_iteration

    def report(e: int, state, training: Mapping[str, np.ndarray]) -> None:
        evaluations = program.evaluate(state, e)
        recorder(e * steps_per_epoch, [{**evaluations[i], **{k: v[i] for k, v in training.items()}}
                                       for i in range(len(seeds))])

    with _StopOnSignal() as stop:  # from the start: a signal before the first epoch ends stops after it
        if restored is None:
            state, start = program.init(seeds), 0
            report(0, state, {})
        else:
            state, start = jax.device_put(restored.state), restored.chunks_done
        for e in range(start + 1, epochs + 1):
            state, training = program.epoch(state)
            report(e, state, jax.device_get(training))
            last = e == epochs
            if last or stop.signum is not None or e % config.checkpoint_interval == 0:
                # The params first: a checkpoint's run directory then holds its policy (a run stopped in between
                # resumes from the previous checkpoint and writes the same params again).
                _save_params(run_dir, algo, spec.seeds, program.params(state))
                checkpointer.save(e, state, recorder.rows, recorder.timing)
            if stop.signum is not None and not last:
                raise RunStopped(f"{signal.Signals(stop.signum).name}: stopped after epoch {e}/{epochs} (iteration "
                                 f"{e * config.eval_interval}), checkpointed", SIGNAL_EXIT[stop.signum],
                                 resume_dir=run_dir.path)


def _train_seeds(algo: Algorithm, config: Config, run_dir: RunDir, spec: RunSpec, group: Sequence[tuple[int, int]],
                 recorder: _Recorder, finished: _Finished | None) -> Sequence[Any]:
    """`algo.train` on the group's seeds; a SIGINT / SIGTERM stops it at once with RunStopped (the seeds that
    finished before it are kept: a resume trains the others again from their start)."""
    try:
        with _StopOnSignal(at_once=True):
            return algo.train([config.seed + seed for _, seed in group], recorder)
    except _Interrupted as e:
        done = [s for r, s in enumerate(spec.seeds) if (finished and r in finished.runs) or r < group[0][0]]
        seeds = ", ".join(str(seed) for _, seed in group)
        raise RunStopped(f"{signal.Signals(e.signum).name}: stopped while training seed {seeds}; "
                         f"{len(done)} of {len(spec.seeds)} seed(s) finished and kept ({algo.title} cannot go on from "
                         f"within a seed, so a resume trains seed {seeds} and the rest from their start)",
                         SIGNAL_EXIT[e.signum], resume_dir=run_dir.path) from None


def restore(checkpointer: Checkpointer, algo: Algorithm, config: Config, spec: RunSpec) -> Restored:
    """The newest usable checkpoint of a `Program`'s run: the state of all its seeds (`spec.seeds`), as saved
    (a reader such as `mjx-dacer eval` passes a read-only `Checkpointer`). Raises CheckpointError if none is usable.
    """
    seeds = [config.seed + s for s in spec.seeds]
    return checkpointer.restore(jax.eval_shape(lambda: algo.program.init(seeds)))


@dataclasses.dataclass(frozen=True)
class _Finished:
    """What a resume keeps of a run whose trainer runs each seed to its end in one call (PPO): the seeds that
    finished (their params saved, every evaluation in metrics.csv) with their rows and timing rows; `session`:
    the number of the session that trains the others again from their start."""

    runs: frozenset[int]
    rows: list[dict]
    timing: list[dict]
    session: int


def _finished(run_dir: RunDir, algo: Algorithm, config: Config, spec: RunSpec) -> _Finished:
    """The seeds of `run_dir` whose training ended (`_Finished`). Raises ConfigError (one line) if its
    metrics.csv or timing.csv is damaged (`report.read_rows`)."""
    rows, timing = (report.read_rows(path) if path.is_file() else [] for path in (run_dir.metrics, run_dir.timing))
    evaluations = config.total_iterations // config.eval_interval + 1
    counts = collections.Counter(r.get("run") for r in rows)
    runs = frozenset(r for r, seed in enumerate(spec.seeds)
                     if params_path(run_dir, algo.name, seed).is_file() and counts[r] == evaluations)
    return _Finished(runs, [r for r in rows if r.get("run") in runs], [t for t in timing if t.get("run") in runs],
                     session=max((t.get("session") or 0 for t in timing), default=0) + 1)


def _check_settings(run_dir: RunDir, algo: Algorithm) -> None:
    """A resumed run must go on with the settings it was started with (NAME.yaml)."""
    path = run_dir.path / f"{algo.name}.yaml"
    stored = yaml.safe_load(path.read_text()) if path.is_file() else None
    if stored != yaml.safe_load(yaml.safe_dump(dict(algo.settings), sort_keys=False)):
        raise ConfigError(f"{path.name} in {run_dir.path} differs from this mjx_dacer's {algo.name} settings (or is "
                          "missing), so the run cannot go on exactly; start a new run with --out")


def run(config: Config, out: str | pathlib.Path, algorithm: Callable[[Config, Env], Algorithm], *,
        seeds: int | Sequence[int] = 1, progress_fn: sinks.ProgressFn = print, resume: bool = False,
        track: str | None = None) -> list[dict]:
    """Train an on-policy algorithm for each seed (one after another or together) and write the run directory `out`.

    Args:
      config: a checked Config (the algorithm's module checks it first); with `resume`, the run's stored
        config or, for a `Program`, that config with a larger total_iterations (train a finished run longer).
      out: the run directory; absent or empty (with `resume`: an earlier run of the algorithm).
      algorithm: (config, task wrapped in `KeepMetricKeys`) -> the `Algorithm` to run.
      seeds: how many seeds (0..N-1), or which; seed s trains with seed config.seed + s. With `resume`: the run's.
      progress_fn: receives every progress line.
      resume: go on as if the run had not stopped: a `Program` from the newest usable checkpoint in `out`; a
        `train` function keeps the seeds that finished and trains the others from their start.
      track: None, or a Weights & Biases project: one W&B run per seed (`sinks.WandbSink`, as the shared
        program's runs; a resumed run continues them); needs wandb, checked before anything is written.
    Returns:
      metrics.csv's rows: one dict per evaluation point and seed (with `resume`, those before it too).
    Raises:
      ConfigError: bad seeds, `out` holds files, or (with `resume`) a config or settings that differ from the run's,
        or a finished run given to a `train` function (all before anything is written); CheckpointError: no usable
        checkpoint to resume, or unreadable rows; RunStopped: a signal stopped a `Program` after its epoch in
        progress, or a `train` function at once.
    """
    out = pathlib.Path(out)
    sinks.check_tracking_available(track)
    if resume:
        run_dir, stored, spec = RunDir.open(out)
        config = resumed_config(stored, config)
    else:
        spec = RunSpec(grid=({},), seeds=tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds))
        spec.validate(config)
        RunDir.check_new(out)
    env = KeepMetricKeys(envs.make(config.env, physics=config.physics))
    algo = algorithm(config, env)
    restored = finished = None
    if resume and algo.program is None:
        if config.total_iterations != stored.total_iterations:
            raise ConfigError(f"{algo.name} cannot train a run longer: {algo.title}'s trainer starts each seed from "
                              "its beginning; start a new run with --out")
        _check_settings(run_dir, algo)
        finished = _finished(run_dir, algo, config, spec)
        if len(finished.runs) == len(spec.seeds):
            raise ConfigError(f"{run_dir.path}: the run is finished (all {len(spec.seeds)} seed(s)), so there is "
                              "nothing to resume")
        checkpointer = None
    elif resume:
        _check_settings(run_dir, algo)
        checkpointer = Checkpointer(run_dir.path)
        restored = restore(checkpointer, algo, config, spec)
        for line in restored.skipped:
            progress_fn(f"warning: {line} is unusable, skipped")
        run_dir.write_config(config, spec)  # only now, with a usable checkpoint: a longer run records its length
    else:
        run_dir = RunDir.create(out, config, spec)
        (run_dir.path / f"{algo.name}.yaml").write_text(yaml.safe_dump(dict(algo.settings), sort_keys=False))
        checkpointer = Checkpointer(run_dir.path) if algo.program is not None else None
    outputs: list[sinks.Sink] = [
        sinks.CsvSink(run_dir), sinks.TensorBoardSink(run_dir),
        sinks.ReportSink(run_dir, f"{algo.name.upper()} on {config.env}", config.total_iterations),
    ]
    if track is not None:
        outputs.append(sinks.WandbSink(track, run_dir, config, spec))
    per_seed = config.total_iterations // config.eval_interval + 1  # + the untrained policy's
    together = f"{len(spec.seeds)} seed(s) " + ("in one program" if algo.seeds_at_once else "one after another")
    if restored:
        resuming = (f"; resuming after epoch {restored.chunks_done} (iteration "
                    f"{restored.chunks_done * config.eval_interval})")
    elif finished:
        done_seeds = [s for r, s in enumerate(spec.seeds) if r in finished.runs]
        again = [s for r, s in enumerate(spec.seeds) if r not in finished.runs]
        resuming = (f"; resuming: seed(s) {', '.join(map(str, done_seeds)) or 'none'} finished (kept), seed(s) "
                    f"{', '.join(map(str, again))} train from their start")
    else:
        resuming = ""
    progress_fn(f"{config.env}: {algo.title}, {together}, {config.total_iterations} "
                f"iterations x {algo.transitions_per_iteration} transitions ({config.num_envs} envs), "
                f"{per_seed} evaluations per seed, on 1 {jax.default_backend()} device{resuming}; compiling...")
    runs = list(enumerate(spec.seeds))
    groups = [runs] if algo.seeds_at_once else [[r] for r in runs]
    kept = restored or finished
    done = restored.chunks_done + 1 if restored else len(finished.runs) * per_seed if finished else 0
    clock, rows = _Clock(started=time.perf_counter(), total=len(groups) * per_seed, done=done, resumed=done), []
    try:
        for sink in outputs:  # a resume drops the rows written after its checkpoint, or of the unfinished seeds
            sink.start(kept.rows if kept else [], kept.timing if kept else [])
        for group in groups:
            if finished and group[0][0] in finished.runs:
                rows.extend(r for r in finished.rows if r["run"] == group[0][0])
                continue
            recorder = _Recorder(algo, group, config, outputs, progress_fn, clock, restored,
                                 session=finished.session if finished else None)
            if algo.program is not None:
                _drive(algo, config, run_dir, spec, recorder, checkpointer, restored)
            else:
                params = _train_seeds(algo, config, run_dir, spec, group, recorder, finished)
                _save_params(run_dir, algo, [seed for _, seed in group], params)
            rows.extend(recorder.rows)
    finally:
        for sink in outputs:
            sink.close()
        if checkpointer is not None:
            checkpointer.close()
    return rows


__all__ = ["Algorithm", "EVAL_COLUMNS", "KeepMetricKeys", "Program", "ProgressFn", "check_config",
           "evaluation_row", "params_path", "progress_line", "restore", "run"]
