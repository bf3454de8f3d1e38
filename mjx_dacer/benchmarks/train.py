"""Training speed: the on-device program vs a host-driven loop, for 1..16 vmapped seeds.

The on-device column runs `iterations` training iterations as one jit-ed
`lax.scan`, vmapped over seeds. The host-loop column runs the same iterations
the way the reference code is structured: one jit-ed call to act, one to step
the environments, the replay buffer in host memory (numpy), a host-sampled
batch sent to one jit-ed update per iteration. Both use the task's paper
network sizes and start updating at once (no warm-up), and the first call of
each is excluded (compilation).

Memory, per row: the training state's bytes per seed (the replay buffer's
among them), exact from its shapes, and XLA's own plan for the compiled
program (`Compiled.memory_analysis`: the largest amount of device memory it
holds at once, its inputs, outputs and temporaries). `--memory-only` compiles
from the shapes alone, allocating nothing, to see whether a configuration
fits a device before running it (e.g. 16 Humanoid seeds with 1M-transition
buffers on one 80 GB GPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from mjx_dacer.benchmarks import count
from mjx_dacer import envs
from mjx_dacer.benchmarks import common
from mjx_dacer.buffer import Transition
from mjx_dacer.config import load_config
from mjx_dacer.train import make_train


BUFFER_CAPACITY = 100_000  # transitions per seed unless --set buffer_capacity=N


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--envs", nargs="+", default=["Hopper-v5", "Humanoid-v5"], help="tasks (preset configs)")
    p.add_argument("--seeds", nargs="+", type=count, default=[1, 4, 16], help="vmapped seed counts")
    p.add_argument("--iterations", type=count, default=20, help="timed iterations per measurement")
    p.add_argument("--repeats", type=count, default=3, help="timed repeats (median reported)")
    p.add_argument("--host-loop", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the host-driven loop (one seed)")
    p.add_argument("--memory-only", action="store_true",
                   help="compile from the state's shapes only (nothing allocated, nothing timed): the state's and "
                        "XLA's memory per row")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied to every task (e.g. hidden_sizes=64,64)")
    p.add_argument("--compare", nargs="+", default=[""], metavar="SETTINGS",
                   help="measure every task and seed count under each of these settings, side by side: each is "
                        "one quoted, space-separated list of KEY=VALUE overrides applied on top of --set (e.g. "
                        "--compare chain_unroll=1 chain_unroll=20 'chain_unroll=20 physics=faithful'); the last "
                        "column is each row's speed over the first settings' (default: the preset alone)")
    p.add_argument("--out", help="also write the Markdown table to this file (rewritten after every row)")


def task_config(env: str, overrides, bench_defaults: bool = True, option: str = "--envs"):
    """`env`'s preset with `overrides` (KEY=VALUE strings); with `bench_defaults`, no warm-up and
    BUFFER_CAPACITY-transition buffers unless overridden. Raises ConfigError, naming the command-line
    `option` that gave the task, for a task without a preset."""
    from mjx_dacer.config import ConfigError, parse_overrides

    preset = envs.preset(env)
    if preset is None:
        try:
            envs.make(env)  # the registry's error lists the tasks and suggests a close match
        except ValueError as e:
            raise ConfigError(f"{option}: {e}") from None
        raise ConfigError(f"{option}: {env} has no preset in configs/")
    defaults = {"warmup_steps": 0, "buffer_capacity": BUFFER_CAPACITY} if bench_defaults else {}
    values = parse_overrides(overrides)
    if bench_defaults and "warmup_steps" in values:  # its iterations update nothing: they would time as fast ones
        raise ConfigError("warmup_steps cannot be set here: the benchmark times training iterations, which "
                          "update from the first one (no warm-up)")
    return load_config(preset, {**defaults, **values})


@dataclasses.dataclass(frozen=True)
class Measured:
    """One row of the on-device column.

    Attributes:
      seconds_per_iteration: median over the repeats (None with --memory-only); compile_seconds: lowering
        and compiling the vmapped program.
      state_bytes, buffer_bytes: the training state of one seed, and its replay buffer, from the shapes.
      program_bytes: XLA's plan for the compiled program (`program_bytes`).
    """

    seconds_per_iteration: float | None
    compile_seconds: float
    state_bytes: int
    buffer_bytes: int
    program_bytes: int


def tree_bytes(tree) -> int:
    """Bytes of every array (or ShapeDtypeStruct) leaf of `tree`."""
    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def program_bytes(compiled) -> int:
    """Device memory XLA plans for a compiled program: its peak where the backend reports one, else its
    inputs + outputs (less the donated inputs they reuse) + temporaries."""
    m = compiled.memory_analysis()
    peak = int(getattr(m, "peak_memory_in_bytes", 0) or 0)
    return peak or int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
                       + m.temp_size_in_bytes)


def time_on_device(program, seeds: int, iterations: int, repeats: int, memory_only: bool = False) -> Measured:
    """`iterations` training iterations of `seeds` vmapped runs as one compiled program (donating the state)."""
    hp = jax.tree.map(lambda x: jnp.broadcast_to(x, (seeds,)), program.config.hparams())
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    init = program.jit(program.init_batch)
    shapes = jax.eval_shape(init, keys, hp)
    axes = program.state_axes

    def many(ts, hparams):
        return jax.lax.scan(lambda s, _: program.iteration(s, hparams), ts, None, length=iterations)

    run = program.jit(jax.vmap(many, in_axes=(axes, 0), out_axes=(axes, 0)), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = run.lower(shapes, hp).compile()
    compile_s = time.perf_counter() - t0
    # Per seed: the vmapped leaves' bytes over the seeds; the shared counters (axis None) once.
    batched = jax.tree.map(lambda a, x: tree_bytes(x) // seeds if a == 0 else tree_bytes(x), axes, shapes,
                           is_leaf=lambda a: a is None)
    sizes = dict(state_bytes=sum(jax.tree.leaves(batched)), buffer_bytes=tree_bytes(shapes.buffer.data) // seeds,
                 program_bytes=program_bytes(compiled))
    if memory_only:
        return Measured(None, compile_s, **sizes)
    state = init(keys, hp)
    state, m = compiled(state, hp)  # the first call: allocations and autotuning stay out of the timing
    jax.block_until_ready(m)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, m = compiled(state, hp)
        jax.block_until_ready(m)
        times.append((time.perf_counter() - t0) / iterations)
    return Measured(float(np.median(times)), compile_s, **sizes)


def time_host_loop(program, iterations: int, repeats: int) -> float:
    """Seconds per iteration of the reference structure: host buffer, one jit-ed call per stage."""
    cfg, agent, env = program.config, program.agent, program.training_env
    hp = cfg.hparams()
    ts = program.jit(program.init)(jax.random.PRNGKey(0), hp)
    agent_state, env_state = ts.agent, ts.env_state
    act = jax.jit(agent.behaviour_action)
    step = program.jit(env.step)
    update = jax.jit(agent.update)
    cap, s_dim, a_dim = cfg.buffer_capacity, program.env.observation_size, program.env.action_size
    host = {"obs": np.zeros((cap, s_dim), np.float32), "action": np.zeros((cap, a_dim), np.float32),
            "reward": np.zeros(cap, np.float32), "next_obs": np.zeros((cap, s_dim), np.float32),
            "terminated": np.zeros(cap, np.float32), "truncated": np.zeros(cap, np.float32)}
    rng = np.random.default_rng(0)
    pos, size, key = 0, 0, jax.random.PRNGKey(1)

    def one_iteration():
        nonlocal agent_state, env_state, pos, size, key
        key, k_act, k_upd = jax.random.split(key, 3)
        obs = env_state.obs
        actions = act(agent_state, obs, k_act, hp)
        env_state = step(env_state, actions)
        fields = jax.device_get({"obs": obs, "action": actions, "reward": env_state.reward,
                                 "next_obs": env_state.info["final_obs"], "terminated": env_state.info["terminated"],
                                 "truncated": env_state.info["truncated"]})
        idx = (pos + np.arange(cfg.num_envs)) % cap
        for k, v in fields.items():
            host[k][idx] = v
        pos, size = (pos + cfg.num_envs) % cap, min(size + cfg.num_envs, cap)
        sample = rng.integers(0, size, cfg.batch_size)
        batch = Transition(**{k: jnp.asarray(v[sample]) for k, v in host.items()})
        agent_state, metrics = update(agent_state, batch, k_upd, hp)
        return metrics

    jax.block_until_ready(one_iteration())  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iterations):
            m = one_iteration()
        jax.block_until_ready(m)
        times.append((time.perf_counter() - t0) / iterations)
    return float(np.median(times))


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def _settings(text: str) -> list[str]:
    """One --compare value, "chain_unroll=20 physics=faithful", as its overrides."""
    return shlex.split(text)


def run(args: argparse.Namespace) -> int:
    if args.memory_only:
        timed = "Memory only (--memory-only): compiled from the shapes, nothing allocated or timed"
    else:
        timed = (f"Timed iterations per measurement: {args.iterations}, median of {args.repeats}, after one "
                 "untimed call")
    lines = common.header("Training speed: on-device program vs host loop", sys.argv) + [
        f"{timed}; no warm-up (updates from the first iteration); replay buffers of {BUFFER_CAPACITY:,} "
        "transitions and the paper's network sizes unless overridden; overrides: "
        f"{' '.join(args.overrides) or 'none'}. "
        "Memory: the training state of one seed (its replay buffer in brackets), exact from the shapes; "
        "XLA: the compiled program's planned device memory, all seeds. Settings: the row's --compare "
        "overrides; the last column is its on-device speed over the first settings' at the same seed count.",
        "",
        "| task | settings | seeds | on-device iter/s (per seed) | env steps/s (all seeds) | s/iter | compile s "
        "| host loop iter/s (1 seed) | on-device speed-up | state MiB/seed (buffer) | XLA MiB | vs first settings |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # Bad input fails before any compile.
    configs = {(env, v): task_config(env, [*args.overrides, *_settings(v)]) for env in args.envs for v in args.compare}
    print("\n".join(lines), flush=True)
    for env in args.envs:
        programs = {v: make_train(configs[env, v]) for v in args.compare}
        host_ips = {v: 1.0 / time_host_loop(p, args.iterations, args.repeats)
                    for v, p in programs.items() if args.host_loop and not args.memory_only}
        for seeds in args.seeds:
            first_ips = None
            for v, program in programs.items():
                m = time_on_device(program, seeds, args.iterations, args.repeats, memory_only=args.memory_only)
                memory = f"{_mib(m.state_bytes)} ({_mib(m.buffer_bytes)}) | {_mib(m.program_bytes)}"
                label = v.strip() or "preset"
                if m.seconds_per_iteration is None:
                    row = f"| {env} | {label} | {seeds} | | | | {m.compile_seconds:.1f} | | | {memory} | |"
                else:
                    ips = 1.0 / m.seconds_per_iteration
                    first_ips = first_ips or ips
                    host = host_ips.get(v) if seeds == 1 else None
                    versus = f"{ips / first_ips:.2f}x" if len(programs) > 1 else ""
                    row = (f"| {env} | {label} | {seeds} | {ips:,.1f} | {ips * seeds * program.config.num_envs:,.0f} | "
                           f"{m.seconds_per_iteration * 1e3:.1f} ms | {m.compile_seconds:.1f} | "
                           f"{f'{host:,.1f}' if host else ''} | {f'{ips / host:.1f}x' if host else ''} | {memory} "
                           f"| {versus} |")
                lines.append(row)
                print(row, flush=True)
                common.write(args.out, lines)  # after every row: a long CPU run keeps what it measured
    return 0
