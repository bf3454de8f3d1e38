"""Host driver: the entries of a RunSpec as one vmapped, sharded program, run chunk by chunk.

    Runner.run: init or restore -> for each chunk: compiled chunk -> ChunkResult
      -> sinks (progress line, metrics.csv + timing.csv, TensorBoard, curves.png, summary.md)
      -> checkpoint (whole state, atomic) + policy.msgpack

The host touches data only between chunks. `run` is the one-call API.

Checkpoints are written in the background. Between chunks the state is
copied to host memory (a snapshot, so the device buffers can be donated to
the next chunk at once) and the policy file written; the checksums and the
files of the checkpoint are then written by a second worker thread while the
next chunk runs. With 1M-transition buffers a checkpoint is gigabytes per
seed, and writing it in line would stall the accelerator for about as long
as a chunk. One write is in flight at a time (the next snapshot waits for
it), the end of the run and a stop wait for it, and a checkpoint counts as
written only once its write has finished.

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
import numbers
import os
import pathlib
import signal
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mjx_dacer import compile_cache, sinks
from mjx_dacer.checkpoint import Checkpointer, snapshot
from mjx_dacer.config import Config, ConfigError, error_line
from mjx_dacer.errors import SIGNAL_EXIT, RunStopped
from mjx_dacer.policy import export_policy
from mjx_dacer.rundir import RunDir, RunSpec, resumed_config
from mjx_dacer.train import TrainProgram, TrainState, make_train

ProgressFn = sinks.ProgressFn


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


EXIT_DIVERGED = 3
ON_DIVERGENCE = ("stop", "drop")
SLOW_CHECKPOINT_SECONDS = 5.0  # a checkpoint this slow is always reported


class Runner:
    """Runs one RunSpec of a config chunk by chunk and writes the run directory.

    Between chunks it hands a ChunkResult to the sinks, checkpoints every
    `checkpoint_interval` chunks (and at the end), and reacts to SIGINT /
    SIGTERM by checkpointing after the current chunk and stopping with `RunStopped`.
    """

    def __init__(self, config: Config, spec: RunSpec, out_dir: pathlib.Path, progress: ProgressFn = print,
                 program: TrainProgram | None = None, on_divergence: str = "stop", checkpoints_to_keep: int = 2,
                 track: str | None = None, verbose: bool = False):
        self._clock_start = time.perf_counter()  # timing.csv's wall clock counts from here: the build is in it
        # W&B logging (`track`: a project name) needs wandb: checked before anything is built or written.
        sinks.check_tracking_available(track)
        if on_divergence not in ON_DIVERGENCE:
            raise ConfigError(f"on_divergence must be one of {', '.join(ON_DIVERGENCE)}, got {on_divergence!r}")
        self.config = config
        self.spec = spec
        self.run_dir = RunDir(pathlib.Path(out_dir))
        self.progress = progress
        self.on_divergence = on_divergence
        self.checkpoints_to_keep = checkpoints_to_keep
        self.verbose = verbose  # a line for every checkpoint, not only the notable ones
        self._checkpoint_lines = 0
        self.program = program or make_train(config)
        self.batch = len(spec.entries)
        self.sharding = run_sharding(self.batch)
        # The run axis: one PRNG key and one HParams entry per (grid point, seed).
        self.keys, self.hparams = spec.inputs(config)
        if self.sharding is not None:
            self.keys, self.hparams = jax.device_put((self.keys, self.hparams), self.sharding)
        self.metric_rows: list[dict] = []  # metrics.csv's rows so far, in memory
        self.timing_rows: list[dict] = []  # timing.csv's rows so far (one per chunk)
        self._compile_seconds = 0.0  # compiling since the last timing row
        self._init = self.program.jit(self.program.init_batch)
        # Sharded runs: the state leaves the chunk with the shardings it came in with, so the
        # program compiled ahead for the first chunk fits every later one.
        self._state_sharding = None if self.sharding is None else self._state_shardings()
        out = {} if self.sharding is None else {"out_shardings": (self._state_sharding, self.sharding)}
        self._max_chunk = max(self.program.chunk_sizes)
        self._chunk = self.program.jit_chunk_batch(**out)  # one program for chunks of every length
        title = f"{config.algo.upper()} on {config.env}"
        self.sinks: list[sinks.Sink] = [
            sinks.ProgressSink(progress, config.total_iterations),
            sinks.CsvSink(self.run_dir),
            sinks.TensorBoardSink(self.run_dir),
            sinks.ReportSink(self.run_dir, title, config.total_iterations),
        ]
        if track is not None:
            self.sinks.append(sinks.WandbSink(track, self.run_dir, config, spec))
        self._stop_signal: int | None = None  # the first SIGINT / SIGTERM received
        self._abandon = False  # stop now, without finishing the chunk in progress
        self._notice_due = False  # a first Ctrl-C arrived: say what it waits for
        self._last_chunk_seconds: float | None = None
        self._task: str | None = None  # what the worker thread is doing: "compile", "chunk" or nothing
        self._task_started = 0.0
        self._saved: tuple[int, int] | None = None  # (chunks, iteration) of the newest complete checkpoint
        self._compiled: Any = None  # the chunk program, compiled
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None  # runs compiles and chunks (see `_call`)
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None  # writes checkpoints (see `_save`)
        self._pending: _PendingWrite | None = None  # the checkpoint write in flight

    @property
    def out_dir(self) -> pathlib.Path:
        return self.run_dir.path

    # ------------------------------------------------------------ checkpoints
    def _save(self, checkpointer: Checkpointer, chunks_done: int, ts: TrainState, wait: bool) -> None:
        """Snapshot `ts`, write the policy file, and hand the checkpoint to the writer thread.

        `wait`: return only once the checkpoint is written (the end of the run, a stop).
        """
        self._finish_write()  # one write at a time: one snapshot in host memory
        wait = wait or self._stop_signal is not None  # a Ctrl-C during that wait: this one is the last
        iteration = self.program.iterations_after(chunks_done)
        leaves = snapshot(ts)
        # The policy alone, next to the checkpoint: small and independent of the buffer.
        export_policy(self.run_dir.path, self.config, self.program.agent, ts.agent, self.hparams,
                      labels=self.spec.labels, seeds=[s for _, s in self.spec.entries], iteration=iteration,
                      obs_size=self.program.env.observation_size, action_size=self.program.env.action_size)
        future = self._writer.submit(checkpointer.write, chunks_done, leaves, list(self.metric_rows),
                                     list(self.timing_rows))
        self._pending = _PendingWrite(future, chunks_done, iteration, checkpointer.directory)
        if wait:
            self._finish_write()

    def _finish_write(self) -> None:
        """Wait for the checkpoint write in flight, if any (signals handled meanwhile), and report it."""
        if self._pending is None:
            return
        t0 = time.perf_counter()
        while not self._pending.future.done():
            self._check_signals()
            concurrent.futures.wait([self._pending.future], timeout=0.1)
        self._pending.waited = time.perf_counter() - t0
        self._collect_write()

    def _collect_write(self, errors: bool = True) -> None:
        """Report a finished checkpoint write; nothing while it runs.

        A failed write raises its error, or with `errors=False` (during a chunk, whose worker could not
        be stopped) stays pending until the next `_finish_write` raises it, between chunks.
        """
        pending = self._pending
        if pending is None or not pending.future.done() or (not errors and pending.future.exception()):
            return
        self._pending = None
        seconds, size = pending.future.result()
        self._saved = (pending.chunks_done, pending.iteration)
        # Notable: the first one (where they go), a slow one (its cost), or every one with --verbose.
        chunk_seconds = self._last_chunk_seconds or 0.0
        slow = seconds > SLOW_CHECKPOINT_SECONDS or (seconds > 1.0 and seconds > 0.25 * chunk_seconds)
        if self.verbose or slow or not self._checkpoint_lines:
            self._checkpoint_lines += 1
            waited = f", training waited {pending.waited:.1f} s for it" if pending.waited > 1.0 else ""
            self.progress(f"checkpoint {pending.chunks_done}: {size / 2**20:,.1f} MiB in {seconds:.1f} s{waited} "
                          f"({pending.directory})" + (" (slow)" if slow and not self.verbose else ""))

    def _restore(self, checkpointer: Checkpointer) -> tuple[TrainState, int, list[dict], list[dict]]:
        abstract = jax.eval_shape(self._init, self.keys, self.hparams)
        restored = checkpointer.restore(abstract)
        for line in restored.skipped:
            self.progress(f"warning: skipped {line}")
        # The chunk count names the checkpoint; the state's own counter must agree with this run's chunks.
        expected = sum(self.program.chunk_sizes[:restored.chunks_done])
        found = int(np.max(jax.device_get(restored.state.iteration)))
        if found != expected:
            raise ConfigError(
                f"checkpoint {restored.chunks_done} holds iteration {found} (warm-up included), but this run's "
                f"chunk {restored.chunks_done} ends at {expected}: it was written with another chunk layout (an "
                "mjx_dacer from before runs without a warm-up began with an iteration-0 evaluation); resume it "
                "with that version, or start again with --overwrite")
        self._saved = (restored.chunks_done, self.program.iterations_after(restored.chunks_done))
        return self._shard(restored.state), restored.chunks_done, restored.rows, restored.timing

    # --------------------------------------------------------------- sharding
    def _state_shardings(self) -> TrainState:
        """Per leaf of the batched state: split over devices along the run axis, or replicated (shared counters)."""
        replicated = NamedSharding(self.sharding.mesh, PartitionSpec())
        return jax.tree.map(lambda a: self.sharding if a == 0 else replicated, self.program.state_axes,
                            is_leaf=lambda a: a is None)

    def _shard(self, tree):
        return tree if self.sharding is None else jax.device_put(tree, self._state_sharding)

    def _initial_state(self) -> TrainState:
        t0 = time.perf_counter()
        ts = self._call("compile", lambda: jax.block_until_ready(self._init(self.keys, self.hparams)))
        self._compile_seconds += time.perf_counter() - t0  # compiling init, mostly: running it is quick
        return self._shard(ts)

    # ---------------------------------------------------------------- signals
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
            wait = f"finishing the current chunk (about {sinks.duration(left)} left at the last chunk's speed)"
        elif self._task == "chunk":
            wait = "finishing the current chunk (the first one: its length is not known yet)"
        elif self._task == "compile":
            wait = "compiling, then running the current chunk"
        else:
            wait = "stopping after this chunk's checkpoint"
        return f"{signal.Signals(self._stop_signal).name}: {wait}; press Ctrl-C again to stop at once without it"

    def _stopped_now(self) -> RunStopped:
        """The error for a run abandoned mid-chunk: what is kept."""
        name = signal.Signals(self._stop_signal).name
        if self._saved is None:
            kept = "no checkpoint had been written yet: start the run again"
        else:
            kept = f"the newest checkpoint (chunk {self._saved[0]}, iteration {self._saved[1]}) is intact"
        return RunStopped(f"{name}: stopped without finishing the chunk in progress; {kept}",
                          SIGNAL_EXIT[self._stop_signal], abandoned=True,
                          resume_dir=None if self._saved is None else self.out_dir)

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
                self._collect_write(errors=False)  # said as soon as it is written, not after the chunk
                try:
                    return future.result(timeout=0.1)
                except concurrent.futures.TimeoutError:
                    continue
        finally:
            self._task = None

    def _compiled_chunk(self, ts: TrainState):
        """The chunk program (state, hparams, length) -> (state, row), compiled ahead of its first call.

        Compiling apart from running keeps compile time out of the chunk's
        speed and out of the time a Ctrl-C is told the chunk needs.
        """
        if self._compiled is None:
            t0, hits = time.perf_counter(), compile_cache.hits()
            lowered = self._chunk.lower(ts, self.hparams, np.int32(0))  # tracing the program
            self._compiled = self._call("compile", lowered.compile)
            seconds = time.perf_counter() - t0
            self._compile_seconds += seconds
            cached = "; XLA's part loaded from the compilation cache" if compile_cache.hits() > hits else ""
            self.progress(f"compiled the chunk program (chunks of up to {self._max_chunk} iterations) in "
                          f"{seconds:.1f} s{cached}")
        return self._compiled

    # -------------------------------------------------------------------- run
    def run(self, resume: bool = False) -> TrainState:
        """Train to the end (or from the newest usable checkpoint with `resume=True`)."""
        cfg, program = self.config, self.program
        if not resume:
            RunDir.create(self.out_dir, cfg, self.spec)
        checkpointer = Checkpointer(self.out_dir, self.checkpoints_to_keep)
        # Signal handlers can only be installed from the main thread (not, e.g., from a worker thread of a notebook).
        in_main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, self._handle_signal) for s in SIGNAL_EXIT} if in_main else {}
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mjx-dacer-run")
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mjx-dacer-checkpoint")
        try:
            sizes = program.chunk_sizes
            if resume:
                ts, start_chunk, self.metric_rows, self.timing_rows = self._restore(checkpointer)
                # Only now, with a usable checkpoint: a run made longer records its new length.
                self.run_dir.write_config(cfg, self.spec)
            else:
                start_chunk, self.metric_rows, self.timing_rows = 0, [], []
            for sink in self.sinks:
                sink.start(self.metric_rows, self.timing_rows)  # a resume drops the rows after its checkpoint
            clock = _SessionClock(self._clock_start, self.timing_rows, start_chunk)
            done_iters = sum(sizes[:start_chunk])  # warm-up included: what the time goes into
            warmup = f" after {cfg.warmup_iterations} warm-up iterations" if cfg.warmup_iterations else ""
            self.progress(
                f"{cfg.env}: {self.batch} run(s) ({len(self.spec.grid)} grid point(s) x {len(self.spec.seeds)} "
                f"seed(s)), {cfg.total_iterations} iterations{warmup} x {cfg.num_envs} envs in {len(sizes)} "
                f"chunk(s) on {len(jax.local_devices())} {jax.default_backend()} device(s)"
                + (f"; resuming after chunk {start_chunk} (iteration {program.iterations_after(start_chunk)})"
                   if resume else "")
                + "; compiling..."
            )
            if cfg.warmup_iterations > cfg.total_iterations and not resume:
                self.progress(f"warning: the warm-up ({cfg.warmup_iterations} iterations of random actions) is longer "
                              f"than the training after it ({cfg.total_iterations} iterations); lower warmup_steps "
                              "or raise total_iterations unless that is what you want")
            if not resume:
                ts = self._initial_state()
            # The ETA: training chunks only (the warm-up updates nothing and runs much faster), compiles excluded.
            run_seconds, run_iters = 0.0, 0
            for c in range(start_chunk, len(sizes)):
                n = sizes[c]
                chunk = self._compiled_chunk(ts)
                t0 = time.perf_counter()
                ts, metrics = self._call("chunk", lambda: jax.block_until_ready(chunk(ts, self.hparams, np.int32(n))))
                metrics = jax.device_get(metrics)
                dt = time.perf_counter() - t0
                self._last_chunk_seconds = dt
                done_iters += n
                warmup_chunk = c == 0  # (possibly of no iterations: then only the untrained policy's evaluation)
                if not warmup_chunk:
                    run_seconds, run_iters = run_seconds + dt, run_iters + n
                result = sinks.ChunkResult(
                    chunk=c + 1, num_chunks=len(sizes), iteration=program.iterations_after(c + 1),
                    env_steps=done_iters * cfg.num_envs, warmup=warmup_chunk, seconds=dt,
                    eta_seconds=run_seconds / run_iters * (sum(sizes) - done_iters) if run_iters else None,
                    env_steps_per_second=n * cfg.num_envs * self.batch / dt,
                    updates_per_second=float(np.sum(metrics["updates"])) / dt,
                    rows=sinks.chunk_rows(metrics, self.spec),
                    timing=clock.row(c + 1, program.iterations_after(c + 1), done_iters * cfg.num_envs, dt,
                                     self._compile_seconds),
                )
                self._compile_seconds = 0.0
                self.metric_rows.extend(result.rows)
                self.timing_rows.append(result.timing)
                for sink in self.sinks:
                    sink.write(result)
                diverged = [r for r in result.rows if r["diverged"]]
                live = any(not r["frozen"] for r in result.rows)
                if diverged and (self.on_divergence == "stop" or not live):
                    checkpointed = self._saved is not None or self._pending is not None
                    raise _diverged(diverged[0], live, self.out_dir if checkpointed else None)
                last = c == len(sizes) - 1
                self._check_signals()
                stopping = last or self._stop_signal is not None
                if stopping or (c + 1) % cfg.checkpoint_interval == 0:
                    self._save(checkpointer, c + 1, ts, wait=stopping)
                self._check_signals()
                if self._stop_signal is not None and not last:
                    raise RunStopped(
                        f"interrupted after chunk {c + 1}/{len(sizes)} (iteration {program.iterations_after(c + 1)})",
                        SIGNAL_EXIT[self._stop_signal], resume_dir=self.out_dir,
                    )
        finally:
            self._worker.shutdown(wait=False)  # an abandoned chunk may still be running: not waited for
            pending = self._pending
            if pending is not None and not self._abandon:
                # Stopped by an error (e.g. a diverged run): the write in flight is a good checkpoint.
                while not pending.future.done() and not self._abandon:  # a second Ctrl-C: not waited for
                    concurrent.futures.wait([pending.future], timeout=0.1)
                try:
                    if not self._abandon:
                        self._collect_write()
                except Exception as e:  # the error that stopped the run is the one to raise
                    self.progress(f"warning: checkpoint {pending.chunks_done} was not written: {error_line(e)}")
            self._writer.shutdown(wait=not self._abandon)
            for s, handler in previous.items():
                signal.signal(s, handler)
            for sink in self.sinks:
                sink.close()
            checkpointer.close()
        return ts


def _diverged(first: dict, live: bool, checkpointed: pathlib.Path | None) -> RunStopped:
    """The stop after a chunk in which `first` (a metrics row) diverged. `live`: some run is not frozen;
    `checkpointed`: the run directory, if it holds a checkpoint (from before the divergence)."""
    where = (f"run {first['run']} (seed {first['seed']}) diverged at iteration {first['nonfinite_iteration']} "
             f"('{first['nonfinite_metric']}')")
    kept = "the last good checkpoint is kept" if checkpointed else "no checkpoint had been written yet"
    if live:  # the others can go on with that run frozen: resume_dir for the command that does it
        return RunStopped(f"stopped: {where}; {kept}", EXIT_DIVERGED, diverged=True, resume_dir=checkpointed)
    return RunStopped(f"stopped: {where}, and no run is left that has not diverged; {kept}; train again with "
                      "smaller learning rates or reward_scale", EXIT_DIVERGED, diverged=True)


@dataclasses.dataclass
class _PendingWrite:
    """A checkpoint handed to the writer thread: its future ((seconds, bytes) of `Checkpointer.write`)."""

    future: concurrent.futures.Future
    chunks_done: int
    iteration: int
    directory: pathlib.Path
    waited: float = 0.0  # seconds the training waited for it


class _SessionClock:
    """timing.csv's rows (`sinks.TIMING_COLUMNS`) of one session of a run.

    The wall clock goes on from the restored checkpoint's last row, so a resumed run's wall_seconds
    is its training time over all sessions (the time between them not counted). A checkpoint written
    before timing.csv existed has no rows to go on from: wall_seconds is then blank.
    """

    def __init__(self, started: float, restored: Sequence[dict], chunks_done: int):
        last = restored[-1] if restored else None
        self.started = started
        self.offset = last["wall_seconds"] if last else 0.0
        if chunks_done and not last:
            self.offset = None
        self.session = last["session"] + 1 if last else (2 if chunks_done else 1)

    def row(self, chunk: int, iteration: int, env_steps: int, chunk_seconds: float, compile_seconds: float) -> dict:
        wall = None if self.offset is None else round(self.offset + time.perf_counter() - self.started, 3)
        return {"run": None, "chunk": chunk, "iteration": iteration, "env_steps": env_steps, "wall_seconds": wall,
                "chunk_seconds": round(chunk_seconds, 3), "compile_seconds": round(compile_seconds, 3),
                "session": self.session}


def run(
    config: Config | str | None,
    out: str | os.PathLike,
    *,
    seeds: int | Sequence[int] = 1,
    grid: Sequence[Mapping[str, float]] = ({},),
    progress_fn: ProgressFn = print,
    resume: bool = False,
    on_divergence: str = "stop",
    verbose: bool = False,
    track: str | None = None,
) -> list[dict]:
    """Train DACER and write a run directory: the one-call API behind `mjx-dacer train` and `sweep`.

    Args:
      config: a Config, or a preset name / YAML path for `load_config` (None with `resume`).
      out: the run directory; it must not hold files yet (unless `resume`).
      seeds: how many seeds (0..N-1), or which; every grid point runs each.
      grid: HParams overrides per grid point, e.g. [{"lr_actor": 1e-4}, {"lr_actor": 3e-4}].
      progress_fn: receives every progress line (metrics leave through the rows).
      resume: continue the run in `out` from its newest usable checkpoint (seeds and grid are then
        read from `out`, and the ones given ignored). `config` is then None (the stored config) or
        the stored config with a larger total_iterations: the run goes on to the new length.
      on_divergence: "stop" (raise RunStopped, exit code 3) or "drop" (freeze that run).
      verbose: a progress line for every checkpoint (by default: the first and slow ones only).
      track: None (no W&B logging) or a Weights & Biases project name: one W&B run per (grid point, seed)
        (`sinks.WandbSink`); needs wandb (ConfigError before anything is written if it is missing).
    Returns:
      metrics.csv's rows: one dict per evaluation point and (grid point, seed).
    Raises:
      ConfigError: bad config, grid or run directory; RunStopped: a signal or a divergence stopped it.
    """
    out = pathlib.Path(out)
    if resume:
        _, stored, spec = RunDir.open(out)
        if isinstance(config, str):
            raise ConfigError("resume=True takes None (the stored config) or a Config, not a preset name")
        config = stored if config is None else resumed_config(stored, config)
    else:
        if config is None:
            raise ConfigError("a config is needed to start a run (None only with resume=True)")
        if isinstance(config, (str, os.PathLike)):
            from mjx_dacer.config import load_config

            config = load_config(config)
        if not isinstance(config, Config):
            raise ConfigError(f"config must be a Config, a preset name or a YAML path, got a "
                              f"{type(config).__name__} (mjx_dacer.config.from_dict makes a Config of a dict)")
        spec = RunSpec(grid=_grid_points(grid), seeds=_seed_list(seeds))
        spec.validate(config)  # every grid point, before anything is written
        RunDir.check_new(out)  # before the program is built
    runner = Runner(config, spec, out, progress=progress_fn, on_divergence=on_divergence, track=track,
                    verbose=verbose)
    runner.run(resume=resume)
    return runner.metric_rows


def _seed_list(seeds: int | Sequence[int]) -> tuple:
    """`run`'s seeds: a count N (0..N-1) or the seeds; ConfigError naming what was given otherwise."""
    def integer(value):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    if integer(seeds):
        if seeds < 1:
            raise ConfigError(f"seeds must be a count >= 1 or a list of seeds, got {seeds}")
        return tuple(range(int(seeds)))
    if isinstance(seeds, (str, bytes, Mapping)) or not isinstance(seeds, Iterable):
        raise ConfigError(f"seeds must be a count >= 1 or a list of seeds, got {seeds!r}")
    return tuple(int(s) if integer(s) else s for s in seeds)  # RunSpec.validate checks each


def _grid_points(grid: Sequence[Mapping[str, float]]) -> tuple:
    """`run`'s grid: a list of points (mappings); ConfigError for one point given alone."""
    if isinstance(grid, Mapping) or isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence):
        raise ConfigError(f"grid must be a list of points, each a dict of key to value (e.g. [{{'lr_actor': "
                          f"1e-4}}, {{'lr_actor': 3e-4}}]), got {grid!r}")
    return tuple(grid) or ({},)  # RunSpec.validate checks each point
