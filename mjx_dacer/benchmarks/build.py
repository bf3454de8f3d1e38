"""How long a run's chunk program takes to build, before its first iteration: each stage timed.

The program is the one `mjx-dacer train` compiles (`TrainProgram.jit_chunk_batch`:
the iterations, the evaluation episodes, the divergence guard, vmapped over
the seeds), for the task's preset as `train` runs it. Its build has four
stages, each its own column:

- shapes: the state's shapes (`init_batch` traced abstractly) and its vmap axes;
- trace: the chunk's Python traced into a jaxpr (the physics, the reverse
  chain, the GMM fit, under `vmap`); on the host, whatever the device;
- lower: the jaxpr to StableHLO;
- compile: XLA's compile for the backend (what the persistent compilation
  cache of `mjx_dacer.compile_cache` saves on a rerun; off here, so it is cold).

Every build starts from empty in-process caches (`jax.clear_caches`), so
repeats measure the same cold build.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from mjx_dacer.benchmarks import count
from mjx_dacer.benchmarks import common
from mjx_dacer.benchmarks.train import task_config
from mjx_dacer.config import ConfigError
from mjx_dacer.train import make_train

STAGES = ("shapes", "trace", "lower", "compile")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--envs", nargs="+", default=["Hopper-v5", "Humanoid-v5"], help="tasks (preset configs)")
    p.add_argument("--seeds", nargs="+", type=count, default=[1], help="vmapped seed counts")
    p.add_argument("--repeats", type=count, default=1, help="builds per row, each from empty caches (median)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="also time XLA's compile (minutes for the paper's tasks on a CPU)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied to every task (e.g. hidden_sizes=64,64)")
    p.add_argument("--out", help="also write the Markdown table to this file (rewritten after every row)")


def build_seconds(config, seeds: int, compile_program: bool = True) -> dict[str, float]:
    """Seconds of each of STAGES for one cold build of `config`'s chunk program with `seeds` runs."""
    jax.clear_caches()
    program = make_train(config)
    hparams = jax.tree.map(lambda x: jnp.broadcast_to(x, (seeds,)), config.hparams())
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    t0 = time.perf_counter()
    state = jax.eval_shape(program.init_batch, keys, hparams)
    _ = program.state_axes  # traced once per program and cached on it: part of this stage
    t1 = time.perf_counter()
    traced = program.jit_chunk_batch().trace(state, hparams, np.int32(0))
    t2 = time.perf_counter()
    lowered = traced.lower()
    t3 = time.perf_counter()
    seconds = {"shapes": t1 - t0, "trace": t2 - t1, "lower": t3 - t2}
    if compile_program:
        lowered.compile()
        seconds["compile"] = time.perf_counter() - t3
    return seconds


def run(args: argparse.Namespace) -> int:
    if args.repeats < 1 or min(args.seeds) < 1:
        raise ConfigError(f"--repeats and --seeds must be at least 1, got {args.repeats} and {args.seeds}")
    configs = {env: task_config(env, args.overrides, bench_defaults=False) for env in args.envs}  # bad input first
    lines = common.header("Building the chunk program (train's first compile), stage by stage", sys.argv) + [
        f"Each task's preset as `mjx-dacer train` runs it; overrides: {' '.join(args.overrides) or 'none'}. "
        f"Seconds, median of {args.repeats} cold build(s) (in-process caches cleared; no persistent "
        "compilation cache). shapes: the state's; trace: the chunk to a jaxpr; lower: to StableHLO; "
        "compile: XLA's.",
        "",
        "| task | seeds | shapes s | trace s | lower s | compile s | total s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for env, config in configs.items():
        for seeds in args.seeds:
            builds = [build_seconds(config, seeds, args.compile) for _ in range(args.repeats)]
            median = {k: float(np.median([b[k] for b in builds])) for k in builds[0]}
            cells = [f"{median[k]:.1f}" if k in median else "" for k in STAGES]
            row = f"| {env} | {seeds} | {' | '.join(cells)} | {sum(median.values()):.1f} |"
            lines.append(row)
            print(row, flush=True)
            common.write(args.out, lines)
    return 0
