"""Where one training iteration's time goes: its parts timed apart, the whole iteration beside them.

Each part runs as its own compiled `lax.scan` of `--calls` calls on one seed
of the task's preset (the paper's networks; as in `bench train`, no warm-up
and a 100,000-transition buffer unless overridden), timed as `bench train`
times (compiled ahead, one untimed call, the median of `--repeats`):

  env step   the N training environments' step (auto-reset and the episode limit included)
  act        the behaviour action of N states: the reverse diffusion chain (Eq. 5) and the added noise
  buffer     storing N transitions, sampling `updates_per_iteration` batches
  update     one gradient update: the critics (Eq. 11) every call, the actor through the chain (Eq. 10)
             and the targets every `policy_delay` calls, averaged over the calls
  entropy    the entropy estimate alone (Eq. 12-15: M behaviour actions per batch state, the GMM fit),
             which the update runs once per `alpha_update_interval` calls: its share is amortised
  evaluation one step of the `eval_episodes` evaluation episodes (the deterministic action, the
             physics), which every chunk's evaluation runs until its last episode ends, at most the
             time limit: set apart below the iteration, at that most, amortised over `eval_interval`

The sum of the parts (update x updates_per_iteration, entropy / interval)
is set beside the measured iteration (`TrainProgram.iteration`); the rest
is what neither shows apart: fusion across the parts, the metrics, the
branches. `--trace DIR` also records `--calls` whole iterations with
`jax.profiler` (open DIR in TensorBoard's profile plugin or Perfetto) for
the kernel-level view.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mjx_dacer.benchmarks import count
from mjx_dacer import buffer as replay
from mjx_dacer.benchmarks import common
from mjx_dacer.benchmarks.train import task_config
from mjx_dacer.config import ConfigError
from mjx_dacer.train import TrainProgram, make_train


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default="Humanoid-v5", help="task (preset config)")
    p.add_argument("--calls", type=count, default=20, help="calls of each part per timed program")
    p.add_argument("--repeats", type=count, default=3, help="timed repeats (median reported)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override (e.g. hidden_sizes=64,64)")
    p.add_argument("--trace", metavar="DIR", help="also write a jax.profiler trace of --calls whole iterations")
    p.add_argument("--out", help="also write the Markdown table to this file")


def time_scan(program: TrainProgram, step: Callable[[Any], Any], carry: Any, calls: int,
              repeats: int) -> float:
    """Seconds per call of `step` (carry -> carry), `calls` calls in one compiled scan (median of `repeats`).

    A copy of the carry is donated, so a part that updates a large buffer writes it in place as the
    training program does, and the caller's arrays stay usable for the next part.
    """
    carry = jax.tree.map(jnp.copy, carry)
    run = program.jit(lambda c: jax.lax.scan(lambda c, _: (step(c), None), c, None, length=calls)[0],
                      donate_argnums=0)
    compiled = run.lower(carry).compile()
    carry = jax.block_until_ready(compiled(carry))  # untimed: allocations and autotuning
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        carry = jax.block_until_ready(compiled(carry))
        times.append((time.perf_counter() - t0) / calls)
    return float(np.median(times))


def measure_parts(program: TrainProgram, calls: int, repeats: int,
                  progress: Callable[[str], None] = lambda _: None) -> dict[str, float]:
    """Seconds per call of each part (see the module docstring) and of the whole iteration; `progress`
    hears of each part as it is done (compiling them all takes minutes on a CPU)."""
    cfg, agent, env = program.config, program.agent, program.training_env
    hp = cfg.hparams()
    ts = program.jit(program.init)(jax.random.PRNGKey(0), hp)
    n, a_dim = cfg.num_envs, program.env.action_size
    key = jax.random.PRNGKey(1)

    def transitions(obs):  # stored transitions at these states: random actions (their numbers do not matter)
        r = obs.shape[0]
        return replay.Transition(obs=obs, action=jax.random.uniform(key, (r, a_dim), minval=-1.0, maxval=1.0),
                                 reward=jnp.zeros(r), next_obs=obs, terminated=jnp.zeros(r), truncated=jnp.zeros(r))

    stored = transitions(ts.env_state.obs)  # what one iteration stores
    batch = transitions(ts.env_state.obs[jnp.arange(cfg.batch_size) % n])  # what one update reads

    def env_step(c):
        env_state, k = c
        k, k_a = jax.random.split(k)
        return env.step(env_state, jax.random.uniform(k_a, (n, a_dim), minval=-1.0, maxval=1.0)), k

    def act(c):
        agent_state, obs, k, total = c
        k, k_a = jax.random.split(k)
        return agent_state, obs, k, total + jnp.sum(agent.behaviour_action(agent_state, obs, k_a, hp))

    def store_and_sample(c):
        buf, k, total = c
        buf = replay.insert(buf, stored, stored.obs)
        for k_s in jax.random.split(k, cfg.updates_per_iteration + 1)[1:]:
            total = total + jnp.sum(replay.sample(buf, k_s, cfg.batch_size).reward)
        return buf, jax.random.split(k)[0], total

    def update(c):
        agent_state, k = c
        k, k_u = jax.random.split(k)
        return agent.update(agent_state, batch, k_u, hp)[0], k

    def iteration(c):
        return program.iteration(c, hp)[0]

    zero = jnp.zeros(())
    seconds = {}

    def measure(name, step, carry):
        t0 = time.perf_counter()
        seconds[name] = time_scan(program, step, carry, calls, repeats)
        progress(f"{name}: {seconds[name] * 1e3:.3f} ms per call ({time.perf_counter() - t0:.1f} s with compiling)")

    measure("env", env_step, (ts.env_state, key))
    measure("act", act, (ts.agent, ts.env_state.obs, key, zero))
    measure("buffer", store_and_sample, (ts.buffer, key, zero))
    # The untimed first call is update 0, which runs the entropy estimate: the timed ones do not.
    measure("update", update, (ts.agent, key))
    if hasattr(agent, "estimate_entropy"):
        noise_scale = agent.noise_scale(ts.agent.step, hp)

        def entropy(c):
            agent_state, obs, k, total = c
            k, k_e = jax.random.split(k)
            h = agent.estimate_entropy(agent_state.policy_params, obs, k_e, agent_state.log_alpha, noise_scale)
            return agent_state, obs, k, total + h

        measure("entropy", entropy, (ts.agent, batch.obs, key, zero))
    measure("iteration", iteration, ts)

    def evaluation_step(c):
        agent_state, episodes, k = c
        k, k_a = jax.random.split(k)
        return agent_state, jax.vmap(program.env.step)(episodes, agent.eval_action(agent_state, episodes.obs, k_a)), k

    episodes = jax.vmap(program.env.reset)(jax.random.split(key, cfg.eval_episodes))
    measure("evaluation", evaluation_step, (ts.agent, episodes, key))
    return seconds


def table_rows(seconds: dict[str, float], cfg, episode_length: int) -> list[tuple[str, float | None, str, float]]:
    """(part, seconds per call, calls per iteration, seconds per iteration), the sum, the iteration, the rest,
    then the evaluation's most (every episode to the `episode_length` limit), which is not in the iteration."""
    parts = [
        (f"env step ({cfg.num_envs} envs)", seconds["env"], "1", seconds["env"]),
        (f"act ({cfg.num_envs} states, {cfg.diffusion_steps}-step chain)", seconds["act"], "1", seconds["act"]),
        (f"buffer (store {cfg.num_envs}, sample {cfg.updates_per_iteration} x {cfg.batch_size})", seconds["buffer"],
         "1", seconds["buffer"]),
        ("update (critics; actor and targets every "
         f"{cfg.policy_delay})", seconds["update"], str(cfg.updates_per_iteration),
         seconds["update"] * cfg.updates_per_iteration),
    ]
    if "entropy" in seconds:
        interval = cfg.alpha_update_interval / cfg.updates_per_iteration
        parts.append((f"entropy estimate ({cfg.batch_size} states x {cfg.entropy_samples} actions, GMM K="
                      f"{cfg.gmm_components})", seconds["entropy"], f"1/{interval:g}", seconds["entropy"] / interval))
    total = sum(p[3] for p in parts)
    evaluation = (f"evaluation at most ({cfg.eval_episodes} episodes x {episode_length} steps per chunk)",
                  seconds["evaluation"], f"{episode_length}/{cfg.eval_interval}",
                  seconds["evaluation"] * episode_length / cfg.eval_interval)
    return parts + [("sum of the parts", None, "", total),
                    ("whole iteration (measured)", None, "1", seconds["iteration"]),
                    ("the rest", None, "", seconds["iteration"] - total), evaluation]


def run(args: argparse.Namespace) -> int:
    if args.calls < 1 or args.repeats < 1:
        raise ConfigError("--calls and --repeats must be at least 1")
    config = task_config(args.env, args.overrides, option="--env")
    program = make_train(config)
    overrides = f"; overrides: {' '.join(args.overrides)}" if args.overrides else ""
    lines = common.header(f"One training iteration, part by part: {args.env}", sys.argv) + [
        f"One seed, {config.algo.upper()} with the preset's settings but no warm-up and a buffer of "
        f"{config.buffer_capacity:,} transitions (as `bench train`){overrides}. Each part: "
        f"{args.calls} calls in one compiled scan, median of {args.repeats} (after one untimed call). The entropy "
        f"estimate runs once per {config.alpha_update_interval} updates: its share is amortised. The rest: the "
        "measured iteration less the parts (fusion across them, metrics, branches). The last row is not part of "
        f"the iteration: one step of the {config.eval_episodes} evaluation episodes, run after every chunk of "
        f"{config.eval_interval} iterations until the last episode ends, at most the time limit: the most it adds "
        "per iteration.",
        "",
        "| part | ms per call | calls per iteration | ms per iteration | share of the iteration |",
        "|---|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    seconds = measure_parts(program, args.calls, args.repeats, lambda line: print(line, file=sys.stderr, flush=True))
    whole = seconds["iteration"]
    for name, per_call, calls, per_iteration in table_rows(seconds, config, program.episode_length):
        lines.append(f"| {name} | {'' if per_call is None else f'{per_call * 1e3:.3f}'} | {calls} | "
                     f"{per_iteration * 1e3:.3f} | {per_iteration / whole:.0%} |")
        print(lines[-1], flush=True)
    common.write(args.out, lines)  # before the trace: a trace cut short keeps the table
    if args.trace:
        ts = program.jit(program.init)(jax.random.PRNGKey(0), config.hparams())
        many = program.jit(lambda s: jax.lax.scan(lambda c, _: (program.iteration(c, config.hparams())[0], None), s,
                                                  None, length=args.calls)[0])
        compiled = many.lower(ts).compile()
        ts = jax.block_until_ready(compiled(ts))
        with jax.profiler.trace(args.trace):
            jax.block_until_ready(compiled(ts))
        lines += ["", f"jax.profiler trace of {args.calls} whole iterations: {args.trace}"]
        print(lines[-1], flush=True)
    common.write(args.out, lines)
    return 0
