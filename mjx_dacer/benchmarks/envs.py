"""Environment throughput: steps per second per task, physics profile and batch size.

``mjx-dacer bench envs`` times what the training program runs: the
`TrainingWrapper` (N environments, vmapped, auto-reset to fresh states) under
uniform random actions, ``steps`` wrapper steps inside one jitted
``lax.scan``, vmapped over ``--runs`` R runs as the training program vmaps
its seeds and grid points. Compile time (lowering + XLA compile of that scan) is its own
column; throughput is the best of ``--repeats`` timed calls after compiling,
in environment steps (R x N per wrapper step) per second.

Each row runs in a child process, so one row's compiled programs and memory
never slow the next, and a row that wedges does not take the table with it.
On the CPU, ``--cpu-threads 1 2`` runs every row once per XLA:CPU intra-op
pool size (``PJRT_NPROC`` in the child), side by side: what the one-thread
pool that `mjx_dacer.cpu_threads` chooses on jaxlib <= 0.11.0 costs or saves,
and, with more threads, the deadlock it prevents (every pool thread parked in
a batched Cholesky waiting for chunks queued behind itself). A child that
uses no CPU for ``--stall-seconds`` is reported as stalled and killed; one
that runs past ``--row-timeout`` as timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from mjx_dacer.benchmarks import count
from mjx_dacer import cpu_threads
from mjx_dacer.config import ConfigError

DEFAULT_BATCH_SIZES_CPU = (1, 20, 1024)
DEFAULT_BATCH_SIZES_ACCELERATOR = (1, 20, 1024, 4096)
# Auto step counts: about this many environment steps per timed call.
TARGET_ENV_STEPS = {"cpu": 4096, "accelerator": 1_000_000}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mjx_dacer import envs

    parser.add_argument("--envs", nargs="+", default=list(envs.names()), metavar="NAME", help="tasks (default: all)")
    parser.add_argument("--profiles", nargs="+", default=list(envs.PROFILES), choices=envs.PROFILES, help="physics profiles")
    parser.add_argument(
        "--batch-sizes", nargs="+", type=count, default=None, metavar="N",
        help="numbers of parallel environments (default: 1 20 1024, and 4096 on a GPU/TPU)",
    )
    parser.add_argument(
        "--steps", type=count, default=None,
        help="wrapper steps per timed call (default: about 4096 env steps per call on CPU, 1e6 on GPU, within [8, 1000])",
    )
    parser.add_argument(
        "--cpu-threads", nargs="+", type=count, default=None, metavar="N",
        help="CPU backend: run each row with each of these XLA:CPU intra-op pool sizes (PJRT_NPROC); "
        "default: this process's pool",
    )
    parser.add_argument("--runs", nargs="+", type=count, default=[1], metavar="R",
                        help="runs (seeds) vmapped around the N environments, as in training; a row per count")
    parser.add_argument("--repeats", type=count, default=2, help="timed calls per row; the best is reported")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the initial states and actions")
    parser.add_argument("--out", default=None, help="also write the Markdown table to this file (rewritten after every row)")
    parser.add_argument("--row-timeout", type=float, default=1800.0, help="seconds one row (compile + timing) may take")
    parser.add_argument(
        "--stall-seconds", type=float, default=90.0,
        help="on the CPU backend, a row whose process uses no CPU for this long is reported as stalled (deadlocked) and killed",
    )


def run(args: argparse.Namespace) -> int:
    # The rows run in child processes: this one must not take the GPU's memory.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    from mjx_dacer import envs

    for name in args.envs:
        if name not in envs.names():
            try:
                envs.make(name)  # the registry's error lists the tasks and suggests a close match
            except ValueError as e:
                raise ConfigError(f"--envs: {e}") from None
    accelerator = jax.default_backend() != "cpu"
    batch_sizes = args.batch_sizes or (DEFAULT_BATCH_SIZES_ACCELERATOR if accelerator else DEFAULT_BATCH_SIZES_CPU)
    if min(args.runs) < 1 or min(batch_sizes) < 1:
        raise ConfigError(f"--runs and --batch-sizes must be at least 1, got {args.runs} and {list(batch_sizes)}")
    if args.cpu_threads and (accelerator or min(args.cpu_threads) < 1):
        raise ConfigError("--cpu-threads: positive pool sizes, on the CPU backend only")
    # None: the child inherits this process's pool size (PJRT_NPROC as mjx_dacer set it).
    thread_counts = args.cpu_threads or [None]
    header = _header(args)
    rows: list[str] = []
    _emit(header, rows, args.out)
    for name in args.envs:
        for profile in args.profiles:
            if name == "MultiGoal-v0" and profile != args.profiles[0]:
                continue  # no physics engine: one row set is enough
            for runs in args.runs:
                for batch in batch_sizes:
                    steps = args.steps or _auto_steps(runs * batch, accelerator)
                    for threads in thread_counts:
                        result = measure_in_child(name, profile, runs, batch, steps, args, not accelerator, threads)
                        if "error" in result:
                            figures = f"{result['error']} | - "
                        else:
                            figures = f"{result['steps_per_second']:,.0f} | {result['compile_s']:.1f} "
                        pool = "-" if accelerator else str(threads or cpu_threads.pool_size())
                        rows.append(
                            f"| {name} | {profile if name != 'MultiGoal-v0' else '-'} | {runs} | {batch} | {pool} | "
                            f"{figures}| {steps} |"
                        )
                        print(rows[-1], file=sys.stderr, flush=True)
                        _emit(header, rows, args.out)
    if not args.out:
        print("\n".join([header, *rows]))
    return 0


def measure(name: str, profile: str, runs: int, batch: int, steps: int, repeats: int,
            seed: int) -> dict[str, float]:
    """Compile and time ``steps`` TrainingWrapper steps of ``batch`` envs, vmapped over ``runs``."""
    import jax
    import jax.numpy as jnp

    from mjx_dacer import envs

    env = envs.make(name, physics=profile)
    wrapper = envs.TrainingWrapper(env)

    def rollout(state, key):
        def body(state, t):
            shape = (runs, batch, env.action_size)
            action = jax.random.uniform(jax.random.fold_in(key, t), shape, minval=-1.0, maxval=1.0)
            state = jax.vmap(wrapper.step)(state, action)
            return state, state.reward
        return jax.lax.scan(body, state, jnp.arange(steps))

    key = jax.random.PRNGKey(seed)
    reset = envs.jit(wrapper, jax.vmap(wrapper.reset))
    state = jax.block_until_ready(reset(jax.random.split(key, runs * batch).reshape(runs, batch, -1)))
    start = time.perf_counter()
    compiled = envs.jit(wrapper, rollout).lower(state, key).compile()
    compile_s = time.perf_counter() - start
    state, _ = jax.block_until_ready(compiled(state, key))  # first run: allocation, caches
    best = float("inf")
    for i in range(repeats):
        start = time.perf_counter()
        state, _ = jax.block_until_ready(compiled(state, jax.random.fold_in(key, i + 1)))
        best = min(best, time.perf_counter() - start)
    return {"steps_per_second": runs * batch * steps / best, "compile_s": compile_s, "seconds": best}


def measure_in_child(
    name: str, profile: str, runs: int, batch: int, steps: int, args: argparse.Namespace,
    watch_stalls: bool = True, cpu_threads: int | None = None,
) -> dict:
    """`measure` in a fresh Python process, watched for stalls and the row time limit.

    Stalls are watched on the CPU backend only: a process waiting on a GPU
    legitimately uses no CPU. ``cpu_threads`` sets the child's XLA:CPU pool
    size (PJRT_NPROC); None keeps this process's.

    Returns `measure`'s dict, or ``{"error": text}`` for a row that stalled,
    timed out or failed.
    """
    command = [sys.executable, "-m", "mjx_dacer.benchmarks.envs", name, profile, str(runs), str(batch), str(steps),
               str(args.repeats), str(args.seed)]
    # Files, not pipes: a child blocked on a full pipe would look stalled.
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    env = dict(os.environ)
    if cpu_threads is not None:
        env.pop("NPROC", None)
        env["PJRT_NPROC"] = str(cpu_threads)
    child = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
    start = last_busy = time.monotonic()
    last_cpu = _cpu_seconds(child.pid)
    error = None
    while child.poll() is None:
        time.sleep(5.0)
        now, cpu = time.monotonic(), _cpu_seconds(child.pid)
        if cpu is None or last_cpu is None or cpu - last_cpu > 0.05:
            last_busy, last_cpu = now, cpu
        if watch_stalls and now - last_busy > args.stall_seconds:
            error = f"stalled (no CPU use for {args.stall_seconds:.0f} s: deadlock)"
        elif now - start > args.row_timeout:
            error = f"timed out after {args.row_timeout:.0f} s"
        if error:
            child.kill()
            break
    child.wait()
    out.seek(0), err.seek(0)
    stdout, stderr = out.read(), err.read()
    out.close(), err.close()
    if error:
        return {"error": error}
    if child.returncode != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"failed: {last[:120]}"}
    return json.loads(stdout.strip().splitlines()[-1])


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` (all threads), from /proc; None off Linux."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _auto_steps(batch: int, accelerator: bool) -> int:
    target = TARGET_ENV_STEPS["accelerator" if accelerator else "cpu"]
    return int(min(1000, max(8, target // batch)))


def _header(args: argparse.Namespace) -> str:
    from importlib.metadata import PackageNotFoundError, version

    from mjx_dacer.benchmarks import common

    try:
        mjx_version = version("mujoco-mjx")
    except PackageNotFoundError:  # pragma: no cover
        mjx_version = "?"
    lines = common.header("Environment steps per second", sys.argv)
    return "\n".join([
        *lines[:-1],  # common's header ends with a blank line
        f"- mujoco-mjx {mjx_version}",
        "- timed: `TrainingWrapper.step` (vmapped, auto-reset) under uniform random actions, inside one jitted "
        "`lax.scan` of `steps` steps, vmapped over `runs` runs as training vmaps its seeds; env steps/s counts "
        f"every environment of every run; compile = lower + XLA compile of that scan; best of {args.repeats} "
        "timed calls",
        "",
        "| task | physics | runs | batch | XLA:CPU threads | env steps/s | compile (s) | steps timed |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ])


def _emit(header: str, rows: list[str], out: str | None) -> None:
    if out:
        with open(out, "w") as f:
            f.write("\n".join([header, *rows]) + "\n")


if __name__ == "__main__":
    # One benchmark row, run by `measure_in_child`: prints `measure`'s dict as JSON.
    _name, _profile, _runs, _batch, _steps, _repeats, _seed = sys.argv[1:8]
    print(json.dumps(measure(_name, _profile, *map(int, (_runs, _batch, _steps, _repeats, _seed)))), flush=True)
