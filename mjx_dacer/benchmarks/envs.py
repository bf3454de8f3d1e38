"""Environment throughput: steps per second per task, physics profile and batch size.

``python -m mjx_dacer.bench envs`` times what the training program runs: the
`TrainingWrapper` (N environments, vmapped, auto-reset to fresh states) under
uniform random actions, ``steps`` wrapper steps inside one jitted
``lax.scan``. Compile time (lowering + XLA compile of that scan) is its own
column; throughput is the best of ``--repeats`` timed calls after compiling,
in environment steps (N per wrapper step) per second.
"""

from __future__ import annotations

import argparse
import sys
import time

DEFAULT_BATCH_SIZES_CPU = (1, 20, 1024)
DEFAULT_BATCH_SIZES_ACCELERATOR = (1, 20, 1024, 4096)
# Auto step counts: about this many environment steps per timed call.
TARGET_ENV_STEPS = {"cpu": 4096, "accelerator": 1_000_000}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mjx_dacer import envs

    parser.add_argument("--envs", nargs="+", default=list(envs.names()), metavar="NAME", help="tasks (default: all)")
    parser.add_argument("--profiles", nargs="+", default=list(envs.PROFILES), choices=envs.PROFILES, help="physics profiles")
    parser.add_argument(
        "--batch-sizes", nargs="+", type=int, default=None, metavar="N",
        help="numbers of parallel environments (default: 1 20 1024, and 4096 on a GPU/TPU)",
    )
    parser.add_argument(
        "--steps", type=int, default=None,
        help="wrapper steps per timed call (default: about 4096 env steps per call on CPU, 1e6 on GPU, within [8, 1000])",
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per row; the best is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the Markdown table to this file (rewritten after every row)")


def run(args: argparse.Namespace) -> int:
    import jax

    from mjx_dacer import envs

    for name in args.envs:
        if name not in envs.names():
            envs.make(name)  # raises the registry's ValueError with suggestions
    accelerator = jax.default_backend() != "cpu"
    batch_sizes = args.batch_sizes or (DEFAULT_BATCH_SIZES_ACCELERATOR if accelerator else DEFAULT_BATCH_SIZES_CPU)
    header = _header(args)
    rows: list[str] = []
    _emit(header, rows, args.out)
    for name in args.envs:
        for profile in args.profiles:
            if name == "MultiGoal-v0" and profile != args.profiles[0]:
                continue  # no physics engine: one row set is enough
            for batch in batch_sizes:
                steps = args.steps or _auto_steps(batch, accelerator)
                result = measure(name, profile, batch, steps, args.repeats, args.seed)
                rows.append(
                    f"| {name} | {profile if name != 'MultiGoal-v0' else '-'} | {batch} | "
                    f"{result['steps_per_second']:,.0f} | {result['compile_s']:.1f} | {steps} |"
                )
                print(rows[-1], file=sys.stderr, flush=True)
                _emit(header, rows, args.out)
    if not args.out:
        print("\n".join([header, *rows]))
    return 0


def measure(name: str, profile: str, batch: int, steps: int, repeats: int, seed: int) -> dict[str, float]:
    """Compile and time ``steps`` TrainingWrapper steps of ``batch`` envs."""
    import jax
    import jax.numpy as jnp

    from mjx_dacer import envs

    env = envs.make(name, physics=profile)
    wrapper = envs.TrainingWrapper(env)

    def rollout(state, key):
        def body(state, t):
            action = jax.random.uniform(jax.random.fold_in(key, t), (batch, env.action_size), minval=-1.0, maxval=1.0)
            state = wrapper.step(state, action)
            return state, state.reward
        return jax.lax.scan(body, state, jnp.arange(steps))

    key = jax.random.PRNGKey(seed)
    options = envs.compiler_options(wrapper)
    state = jax.block_until_ready(jax.jit(wrapper.reset, compiler_options=options)(jax.random.split(key, batch)))
    start = time.perf_counter()
    compiled = jax.jit(rollout, compiler_options=options).lower(state, key).compile()
    compile_s = time.perf_counter() - start
    state, _ = jax.block_until_ready(compiled(state, key))  # first run: allocation, caches
    best = float("inf")
    for i in range(repeats):
        start = time.perf_counter()
        state, _ = jax.block_until_ready(compiled(state, jax.random.fold_in(key, i + 1)))
        best = min(best, time.perf_counter() - start)
    return {"steps_per_second": batch * steps / best, "compile_s": compile_s, "seconds": best}


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
        "`lax.scan` of `steps` steps; env steps/s counts every environment; compile = lower + XLA compile of "
        f"that scan; best of {args.repeats} timed calls",
        "",
        "| task | physics | batch | env steps/s | compile (s) | steps timed |",
        "|---|---|---:|---:|---:|---:|",
    ])


def _emit(header: str, rows: list[str], out: str | None) -> None:
    if out:
        with open(out, "w") as f:
            f.write("\n".join([header, *rows]) + "\n")
