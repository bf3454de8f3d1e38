"""Host driver: seeds x grid points as one vmapped, sharded program, run chunk by chunk.

The host touches data only between chunks: it prints progress, appends to
metrics.csv and TensorBoard, and redraws curves.png / summary.md.

Stopping. Compiles and chunks run in a worker thread while the main thread
waits in short steps, so signals are handled at once even during a long
chunk: SIGTERM (what `timeout`, SLURM and Kubernetes send before a SIGKILL)
abandons the chunk in progress and stops within a second, keeping the newest
complete checkpoint; a first Ctrl-C (SIGINT) finishes the chunk, saying how
long that should take, then checkpoints; a second one stops like SIGTERM.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import math
import os
import pathlib
import signal
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mjx_dacer import report
from mjx_dacer.checkpoint import Checkpointer
from mjx_dacer.config import HPARAM_FIELDS, Config, ConfigError, HParams, from_dict, to_dict
from mjx_dacer.policy import save_policy
from mjx_dacer.train import TrainProgram, TrainState, make_train

ProgressFn = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Which (grid point, seed) pairs a run contains, in the order of the vmapped axis."""

    grid: tuple[Mapping[str, float], ...]  # hparam overrides per grid point; ({},) for plain training
    seeds: tuple[int, ...]

    @property
    def entries(self) -> list[tuple[int, int]]:
        """(grid index, seed) for each vmapped entry: grid-major, seeds inner."""
        return list(itertools.product(range(len(self.grid)), self.seeds))

    def label(self, g: int) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.grid[g].items()) or "default"


def parse_grid(specs: Sequence[str]) -> tuple[dict[str, float], ...]:
    """["lr_actor=1e-4,3e-4", "noise_scale=0.1,0.15"] -> the Cartesian product as dicts."""
    axes: list[tuple[str, list[float]]] = []
    for spec in specs:
        if "=" not in spec:
            raise ConfigError(f"--grid '{spec}' is not of the form key=v1,v2,...")
        key, values = spec.split("=", 1)
        key = key.strip()
        if key not in HPARAM_FIELDS:
            raise ConfigError(
                f"--grid key '{key}' cannot be swept in one program (it changes shapes or is not a "
                f"hyperparameter); sweepable keys: {', '.join(HPARAM_FIELDS)}"
            )
        try:
            parsed = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--grid '{spec}': values must be numbers separated by commas") from None
        if not parsed:
            raise ConfigError(f"--grid '{spec}' lists no values")
        axes.append((key, parsed))
    if not axes:
        return ({},)
    names = [k for k, _ in axes]
    return tuple(dict(zip(names, combo)) for combo in itertools.product(*(v for _, v in axes)))


def stacked_inputs(config: Config, spec: RunSpec) -> tuple[jax.Array, HParams]:
    """Keys (B, 2) and HParams with leading axis B for the entries of `spec`.

    Seed s always gets the key PRNGKey(config.seed + s), so a grid point's seed s
    reproduces the single run with the same seed.
    """
    keys, hps = [], []
    for g, seed in spec.entries:
        keys.append(jax.random.PRNGKey(config.seed + seed))
        hps.append(config.replace(**spec.grid[g]).hparams())  # validates the swept values too
    return jnp.stack(keys), jax.tree.map(lambda *x: jnp.stack(x), *hps)


def maybe_initialize_distributed() -> None:
    """Multi-host: `jax.distributed.initialize()` when the standard variables are set."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("COORDINATOR_ADDRESS"):
        jax.distributed.initialize()


def run_sharding(batch: int) -> NamedSharding | None:
    """Shard the vmapped run axis over the local devices when it divides evenly."""
    devices = jax.local_devices()
    if len(devices) < 2 or batch % len(devices):
        return None
    return NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))


class RunStopped(Exception):
    """The run stopped before its end; `exit_code` is what the CLI should return.

    `abandoned`: a compile or chunk was still running in the worker thread when
    the run stopped (SIGTERM, or a second Ctrl-C); its result is discarded.
    """

    def __init__(self, message: str, exit_code: int, abandoned: bool = False):
        super().__init__(message)
        self.exit_code = exit_code
        self.abandoned = abandoned


EXIT_DIVERGED = 3
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
ON_DIVERGENCE = ("stop", "drop")


def read_run_dir(run_dir: pathlib.Path) -> tuple[Config, RunSpec]:
    """The resolved config and the seeds / grid stored in RUN_DIR/config.yaml."""
    path = pathlib.Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); check the path")
    values = yaml.safe_load(path.read_text()) or {}
    seeds = tuple(values.pop("seeds", (0,)))
    grid = tuple(dict(g) for g in values.pop("grid", ({},)))
    return from_dict(values), RunSpec(grid=grid, seeds=seeds)


class Runner:
    """Runs one RunSpec of a config chunk by chunk and writes the run directory.

    Between chunks it appends metrics, checkpoints every `checkpoint_interval`
    chunks (and at the end), and reacts to SIGINT / SIGTERM by checkpointing
    after the current chunk and stopping with `RunStopped`.
    """

    def __init__(self, config: Config, spec: RunSpec, out_dir: pathlib.Path, progress: ProgressFn = print,
                 program: TrainProgram | None = None, on_divergence: str = "stop", checkpoints_to_keep: int = 2):
        if on_divergence not in ON_DIVERGENCE:
            raise ConfigError(f"--on-divergence must be one of {', '.join(ON_DIVERGENCE)}, got {on_divergence!r}")
        self.config = config
        self.spec = spec
        self.out_dir = pathlib.Path(out_dir)
        self.progress = progress
        self.on_divergence = on_divergence
        self.checkpoints_to_keep = checkpoints_to_keep
        self.program = program or make_train(config)
        self.batch = len(spec.entries)
        self.sharding = run_sharding(self.batch)
        # The run axis: one PRNG key and one HParams entry per (grid point, seed).
        self.keys, self.hparams = stacked_inputs(config, spec)
        if self.sharding is not None:
            self.keys, self.hparams = jax.device_put((self.keys, self.hparams), self.sharding)
        self.metric_rows: list[dict] = []  # metrics.csv's rows so far, in memory
        self._init = self.program.jit(self.program.init_batch)
        # Sharded runs: the state leaves the chunk with the shardings it came in with, so the
        # program compiled ahead for the first chunk fits every later one.
        self._state_sharding = None if self.sharding is None else self._state_shardings()
        out = {} if self.sharding is None else {"out_shardings": (self._state_sharding, self.sharding)}
        self._chunk = self.program.jit(self.program.run_chunk_guarded_batch, static_argnums=2, donate_argnums=0,
                                       **out)
        self._tb = None
        self._stop_signal: int | None = None  # the first SIGINT / SIGTERM received
        self._abandon = False  # stop now, without finishing the chunk in progress
        self._notice_due = False  # a first Ctrl-C arrived: say what it waits for
        self._last_chunk_seconds: float | None = None
        self._task: str | None = None  # what the worker thread is doing: "compile", "chunk" or nothing
        self._task_started = 0.0
        self._saved: tuple[int, int] | None = None  # (chunks, iteration) of the newest complete checkpoint
        self._compiled: dict[int, Any] = {}  # chunk length -> compiled chunk program
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None  # runs compiles and chunks (see `_call`)

    # ---------------------------------------------------------------- outputs
    def write_config(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        resolved = {**to_dict(self.config), "seeds": list(self.spec.seeds),
                    "grid": [dict(g) for g in self.spec.grid]}
        (self.out_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))

    def rows(self, chunk_metrics: Mapping[str, np.ndarray]) -> list[dict]:
        names = self.program.guarded_metric_names()
        out = []
        for b, (g, seed) in enumerate(self.spec.entries):
            row: dict[str, Any] = {"run": b, "label": self.spec.label(g), "seed": seed}
            row["iteration"] = int(chunk_metrics["iteration"][b])
            row["env_steps"] = int(chunk_metrics["env_steps"][b])
            held = bool(chunk_metrics["frozen"][b])
            for k in sorted(chunk_metrics):
                if k in row or k == "eval_returns":
                    continue
                value = float(chunk_metrics[k][b])
                # A held run's numbers describe a discarded continuation: blank them.
                if held and k not in ("frozen", "diverged", "nonfinite_metric", "nonfinite_iteration"):
                    value = math.nan
                row[k] = value
            metric = int(chunk_metrics["nonfinite_metric"][b])
            row["nonfinite_metric"] = names[metric] if metric >= 0 else ""
            out.append(row)
        return out

    def _log_tensorboard(self, rows: Sequence[dict]) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # optional at run time
            return
        if self._tb is None:
            self._tb = [SummaryWriter(str(self.out_dir / "tb" / f"run{b:03d}")) for b in range(self.batch)]
        for row in rows:
            w = self._tb[row["run"]]
            for k, v in row.items():
                if k not in report.ID_COLUMNS and isinstance(v, float):
                    w.add_scalar(k, v, row["iteration"])
            w.flush()

    def _refresh_reports(self, rows: Sequence[dict]) -> None:
        title = f"DACER on {self.config.env}"
        report.write_curves(rows, self.out_dir / "curves.png", title)
        (self.out_dir / "summary.md").write_text(report.summary_markdown(rows, self.config.total_iterations, title))

    def _save(self, checkpointer: Checkpointer, chunks_done: int, ts: TrainState, rows: list[dict]) -> None:
        seconds, size = checkpointer.save(chunks_done, ts, rows)
        self._saved = (chunks_done, self.program.iterations_after(chunks_done))
        # The policy alone, next to the checkpoint: small and independent of the buffer.
        save_policy(
            self.out_dir / "policy.msgpack", self.config, jax.device_get(ts.agent.policy_params),
            jax.device_get(ts.agent.log_alpha), [self.spec.label(g) for g, _ in self.spec.entries],
            [s for _, s in self.spec.entries], self.program.iterations_after(chunks_done),
            noise_scale=jax.device_get(self.hparams.noise_scale),  # per run: a sweep may vary it
            obs_size=self.program.env.observation_size, action_size=self.program.env.action_size,
        )
        self.progress(f"checkpoint {chunks_done}: {size / 2**20:,.1f} MiB in {seconds:.1f} s "
                      f"({checkpointer.directory})")

    # -------------------------------------------------------------------- run
    def _state_shardings(self) -> TrainState:
        """Per leaf of the batched state: split over devices along the run axis, or replicated (shared counters)."""
        replicated = NamedSharding(self.sharding.mesh, PartitionSpec())
        return jax.tree.map(lambda a: self.sharding if a == 0 else replicated, self.program.state_axes,
                            is_leaf=lambda a: a is None)

    def _shard(self, tree):
        return tree if self.sharding is None else jax.device_put(tree, self._state_sharding)

    def _initial_state(self) -> TrainState:
        return self._shard(self._call("compile", lambda: jax.block_until_ready(self._init(self.keys, self.hparams))))

    def _restore(self, checkpointer: Checkpointer) -> tuple[TrainState, int, list[dict]]:
        abstract = jax.eval_shape(self._init, self.keys, self.hparams)
        restored = checkpointer.restore(abstract)
        for line in restored.skipped:
            self.progress(f"warning: skipped {line}")
        self._saved = (restored.chunks_done, self.program.iterations_after(restored.chunks_done))
        # Rows written after the checkpoint belong to the discarded continuation.
        csv = self.out_dir / "metrics.csv"
        csv.unlink(missing_ok=True)
        report.append_rows(csv, restored.rows)
        return self._shard(restored.state), restored.chunks_done, restored.rows

    def _handle_signal(self, signum, frame) -> None:
        # Flags only: `_check_signals` reports (printing inside a handler can re-enter a print).
        if self._stop_signal is not None or signum == signal.SIGTERM:
            self._abandon = True  # the exit status follows the signal that stopped the run
        self._stop_signal = signum
        self._notice_due = not self._abandon

    def _interrupt_notice(self) -> str:
        """What a first Ctrl-C will wait for, given what the worker is doing now."""
        if self._task == "chunk" and self._last_chunk_seconds is not None:
            left = max(self._last_chunk_seconds - (time.perf_counter() - self._task_started), 1.0)
            wait = f"finishing the current chunk (about {_duration(left)} left at the last chunk's speed)"
        elif self._task == "chunk":
            wait = "finishing the current chunk (the first one: its length is not known yet)"
        elif self._task == "compile":
            wait = "compiling, then running the current chunk"
        else:
            wait = "stopping after this chunk's checkpoint"
        return f"{signal.Signals(self._stop_signal).name}: {wait}; press Ctrl-C again to stop at once without it"

    def _stopped_now(self) -> RunStopped:
        """The error for a run abandoned mid-chunk: what is kept and how to go on."""
        name = signal.Signals(self._stop_signal).name
        if self._saved is None:
            kept = "no checkpoint had been written yet: start the run again"
        else:
            kept = (f"the newest checkpoint (chunk {self._saved[0]}, iteration {self._saved[1]}) is intact; "
                    f"resume with: mjx-dacer train --resume {self.out_dir}")
        return RunStopped(f"{name}: stopped without finishing the chunk in progress; {kept}",
                          SIGNAL_EXIT[self._stop_signal], abandoned=True)

    def _check_signals(self) -> None:
        if self._notice_due:
            self._notice_due = False
            self.progress(self._interrupt_notice())
        if self._abandon:
            raise self._stopped_now()

    def _call(self, task: str, fn: Callable):
        """fn() (a compile or a chunk; it must block until its result is ready) in the worker thread.

        The main thread waits in 0.1 s steps and stays in Python meanwhile, so
        the signal handler runs at once and a SIGTERM never waits for the
        compile or chunk to end.
        """
        self._task, self._task_started = task, time.perf_counter()
        future = self._worker.submit(fn)
        try:
            while True:
                self._check_signals()
                try:
                    return future.result(timeout=0.1)
                except concurrent.futures.TimeoutError:
                    continue
        finally:
            self._task = None

    def _compiled_chunk(self, ts: TrainState, n: int, frozen: jax.Array):
        """The program of an n-iteration chunk, compiled ahead of its first call.

        Compiling apart from running keeps compile time out of the chunk's
        speed and out of the time a Ctrl-C is told the chunk needs.
        """
        if n not in self._compiled:
            t0 = time.perf_counter()
            lowered = self._chunk.lower(ts, self.hparams, n, frozen)  # tracing: quick
            self._compiled[n] = self._call("compile", lowered.compile)
            self.progress(f"compiled the {n}-iteration chunk program in {time.perf_counter() - t0:.1f} s")
        return self._compiled[n]

    def run(self, resume: bool = False) -> TrainState:
        """Train to the end (or from the newest usable checkpoint with `resume=True`)."""
        cfg = self.config
        checkpointer = Checkpointer(self.out_dir, self.checkpoints_to_keep)
        # Signal handlers can only be installed from the main thread (not, e.g., from a worker thread of a notebook).
        in_main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, self._handle_signal) for s in SIGNAL_EXIT} if in_main else {}
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mjx-dacer-run")
        try:
            sizes = self.program.chunk_sizes
            if resume:
                ts, start_chunk, all_rows = self._restore(checkpointer)
            else:
                self.write_config()
                start_chunk, all_rows = 0, []
            self.metric_rows = all_rows
            done_iters = sum(sizes[:start_chunk])  # warm-up included: what the time goes into
            warmup = f" after {cfg.warmup_iterations} warm-up iterations" if cfg.warmup_iterations else ""
            self.progress(
                f"{cfg.env}: {self.batch} run(s) ({len(self.spec.grid)} grid point(s) x {len(self.spec.seeds)} "
                f"seed(s)), {cfg.total_iterations} iterations{warmup} x {cfg.num_envs} envs in {len(sizes)} "
                f"chunk(s) on {len(jax.local_devices())} {jax.default_backend()} device(s)"
                + (f"; resuming after chunk {start_chunk} (iteration {self.program.iterations_after(start_chunk)})"
                   if resume else "")
                + "; compiling..."
            )
            if not resume:
                ts = self._initial_state()
            frozen = jnp.zeros(self.batch, bool)
            for row in all_rows[-self.batch:]:
                frozen = frozen.at[int(row["run"])].set(bool(row.get("frozen", 0.0)))
            run_seconds, start_iters = 0.0, done_iters  # run time excludes compiles
            for c in range(start_chunk, len(sizes)):
                n = sizes[c]
                chunk = self._compiled_chunk(ts, n, frozen)
                t0 = time.perf_counter()
                ts, metrics = self._call("chunk", lambda: jax.block_until_ready(chunk(ts, self.hparams, frozen)))
                metrics = jax.device_get(metrics)
                dt = time.perf_counter() - t0
                self._last_chunk_seconds = dt
                run_seconds += dt
                done_iters += n
                rows = self.rows(metrics)
                all_rows.extend(rows)
                report.append_rows(self.out_dir / "metrics.csv", rows)
                self._log_tensorboard(rows)
                self._refresh_reports(all_rows)
                self._report_progress(c, len(sizes), n, dt, metrics, done_iters, run_seconds, start_iters)
                diverged = [r for r in rows if r["diverged"] == 1.0]
                for r in diverged:
                    self.progress(
                        f"diverged: run {r['run']} (seed {r['seed']}, {r['label']}): first non-finite "
                        f"'{r['nonfinite_metric']}' at iteration {int(r['nonfinite_iteration'])}"
                    )
                if diverged and self.on_divergence == "stop":
                    raise RunStopped(
                        f"stopped: run {diverged[0]['run']} (seed {diverged[0]['seed']}) diverged at iteration "
                        f"{int(diverged[0]['nonfinite_iteration'])} ('{diverged[0]['nonfinite_metric']}'); the last "
                        f"good checkpoint is kept; lower the learning rates or use --on-divergence=drop",
                        EXIT_DIVERGED,
                    )
                frozen = jnp.asarray(metrics["frozen"], bool)
                last = c == len(sizes) - 1
                self._check_signals()
                if last or (c + 1) % cfg.checkpoint_interval == 0 or self._stop_signal is not None:
                    self._save(checkpointer, c + 1, ts, all_rows)
                self._check_signals()
                if self._stop_signal is not None and not last:
                    raise RunStopped(
                        f"interrupted after chunk {c + 1}/{len(sizes)} "
                        f"(iteration {self.program.iterations_after(c + 1)}); "
                        f"resume with: mjx-dacer train --resume {self.out_dir}",
                        SIGNAL_EXIT[self._stop_signal],
                    )
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self._worker.shutdown(wait=False)  # an abandoned chunk may still be running: not waited for
            if self._tb is not None:
                for w in self._tb:
                    w.close()
                self._tb = None
            checkpointer.close()
        return ts

    def _report_progress(self, c, num_chunks, n, dt, metrics, done_iters, run_seconds, start_iters) -> None:
        cfg = self.config
        eta = run_seconds / max(done_iters - start_iters, 1) * (sum(self.program.chunk_sizes) - done_iters)
        live = metrics["frozen"] == 0
        eval_returns = metrics["eval_return"][live] if live.any() else np.array([np.nan])
        self.progress(
            f"[{c + 1}/{num_chunks}] iter {self.program.iterations_after(c + 1)}/{cfg.total_iterations}"
            f"{' (warm-up)' if c == 0 and cfg.warmup_iterations else ''} "
            f"env steps {done_iters * cfg.num_envs} | "
            f"{n * cfg.num_envs * self.batch / dt:,.0f} env steps/s, "
            f"{float(np.sum(metrics['updates'])) / dt:,.0f} updates/s | "
            f"eval return {np.mean(eval_returns):.1f} (runs {np.min(eval_returns):.1f}.."
            f"{np.max(eval_returns):.1f}) | alpha {np.mean(metrics['alpha']):.3f} | "
            f"ETA {_duration(eta)}"
        )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def run(
    config: Config | str | None,
    out: str | os.PathLike,
    *,
    seeds: int | Sequence[int] = 1,
    grid: Sequence[Mapping[str, float]] = ({},),
    progress_fn: ProgressFn = print,
    resume: bool = False,
    on_divergence: str = "stop",
) -> list[dict]:
    """Train DACER and write a run directory: the one-call API behind `mjx-dacer train` and `sweep`.

    Args:
      config: a Config, or a preset name / YAML path for `load_config` (None with `resume`).
      out: the run directory; it must not hold files yet (unless `resume`).
      seeds: how many seeds (0..N-1), or which; every grid point runs each.
      grid: HParams overrides per grid point (`parse_grid` builds the product).
      progress_fn: receives every progress line (metrics leave through the rows).
      resume: continue the run in `out` from its newest usable checkpoint
        (config, seeds and grid are then read from `out`; the ones given are ignored).
      on_divergence: "stop" (raise RunStopped, exit code 3) or "drop" (freeze that run).
    Returns:
      metrics.csv's rows: one dict per evaluation point and (grid point, seed).
    Raises:
      ConfigError: bad config, grid or run directory; RunStopped: a signal or a divergence stopped it.
    """
    out = pathlib.Path(out)
    if resume:
        config, spec = read_run_dir(out)
    else:
        if config is None:
            raise ConfigError("a config is needed to start a run (None only with resume=True)")
        if isinstance(config, str):
            from mjx_dacer.config import load_config

            config = load_config(config)
        seed_list = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
        if not seed_list or min(seed_list) < 0:
            raise ConfigError(f"seeds must be a positive count or non-negative seeds, got {seeds!r}")
        spec = RunSpec(grid=tuple(dict(g) for g in grid) or ({},), seeds=seed_list)
        for point in spec.grid:
            config.replace(**point)  # validate every grid point before anything is written
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(f"{out} already exists and is not an empty directory; choose another run directory")
    runner = Runner(config, spec, out, progress=progress_fn, on_divergence=on_divergence)
    runner.run(resume=resume)
    return runner.metric_rows
