"""`mjx-dacer eval RUN_DIR`: a trained policy's returns in MJX and in Gymnasium's C-MuJoCo simulator.

The `mjx` backend runs the policy in the training environment (the task's
MJX port, vmapped episodes on the device); the `gymnasium` backend runs the
same policy, step by step on the host, in Gymnasium's own v5 environment with
its TimeLimit. Similar returns mean the policy does not exploit anything
particular to the MJX port and works in the standard simulator.

Both backends evaluate deterministic episodes: the chain's a0 without Eq. 16's
noise (DACER), the actor's mode (SAC, DSAC-T, TD3, DDPG), the tanh of the
Gaussian's mean (PPO, TRPO). A run of the shared program is read from its
policy.msgpack (`mjx_dacer.policy`); a PPO or TRPO run from brax's params
(`mjx_dacer.brax_policy`). `add_arguments` and `run` are what `mjx_dacer.cli`
wires in as the `eval` subcommand.
Heavy imports (JAX, MJX, Gymnasium) happen inside `run`, so building the
CLI parser stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import pathlib
from typing import Any, Callable, Sequence

from mjx_dacer.config import ConfigError
from mjx_dacer.errors import VideoNotWritten

BACKENDS = ("mjx", "gymnasium", "both")

DESCRIPTION = (
    "Evaluate a trained policy (RUN_DIR/policy.msgpack; PPO's and TRPO's brax params) with deterministic episodes "
    "in the MJX environment it was trained in and in Gymnasium's C-MuJoCo v5 environment, and print the returns "
    "side by side."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=pathlib.Path, metavar="RUN_DIR",
                        help="run directory of `mjx-dacer train` / `sweep`, any --algo (or a policy.msgpack file)")
    parser.add_argument("--episodes", type=int, default=10, metavar="N",
                        help="deterministic episodes per backend and run (default: 10)")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="mjx: the MJX port; gymnasium: Gymnasium's C-MuJoCo env; both (default, or mjx alone "
                             "for tasks without a Gymnasium version such as MultiGoal-v0)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run", type=int, default=0, metavar="I",
                       help="which run of a seeds / grid batch (default: 0; the order of metrics.csv's 'run')")
    which.add_argument("--all-runs", action="store_true", help="evaluate every run of the batch")
    parser.add_argument("--video", type=pathlib.Path, metavar="PATH",
                        help="also render one deterministic MJX episode to PATH (.mp4 needs imageio-ffmpeg, or .gif); "
                             "exit status 1 if it cannot be rendered (no OpenGL backend), after the results")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial states and of the chain's sampling (default: 0)")


@dataclasses.dataclass(frozen=True)
class Result:
    """The episodes of one (run, backend): returns and lengths, each (E,)."""

    run: int
    label: str
    seed: int
    backend: str
    returns: Any
    lengths: Any


# -------------------------------------------------------------------- mjx
def mjx_episodes(env, act: Callable, params, key, num_episodes: int, episode_length: int, record: bool):
    """`mjx_dacer.evaluate.evaluate` (the training program's rollout) with the policy's params as an argument.

    act(params, obs (E, S), key) -> (E, A). Jitted once per task, it serves every
    run of a batch: only the params change.
    """
    from mjx_dacer.evaluate import evaluate

    return evaluate(env, lambda obs, k: act(params, obs, k), key, num_episodes, episode_length, record)


@dataclasses.dataclass(frozen=True)
class _Trajectory:
    """One episode's qpos (T, nq) and qvel (T, nv): all `envs.render` reads of a state."""

    qpos: Any
    qvel: Any


# ------------------------------------------------------------- gymnasium
def gymnasium_rollout(policy, env_name: str, num_episodes: int, seed: int):
    """Episodes of Gymnasium's own env (with its TimeLimit); episode i resets with seed + i.

    The policy's [-1, 1] action is clipped and mapped onto the action space's
    [low, high] exactly as the MJX tasks map it onto the actuators' ctrlrange.
    Returns: returns (E,), lengths (E,) numpy arrays.
    """
    import gymnasium
    import numpy as np

    env = gymnasium.make(env_name)
    low = np.asarray(env.action_space.low, np.float32)
    high = np.asarray(env.action_space.high, np.float32)
    returns, lengths = np.zeros(num_episodes), np.zeros(num_episodes, np.int64)
    try:
        for i in range(num_episodes):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                action = np.clip(policy(obs), -1.0, 1.0)
                ctrl = low + 0.5 * (action + 1.0) * (high - low)
                obs, reward, terminated, truncated, _ = env.step(ctrl.astype(env.action_space.dtype))
                returns[i] += float(reward)
                lengths[i] += 1
                done = terminated or truncated
    finally:
        env.close()
    return returns, lengths


# ------------------------------------------------------------------ driver
def _has_gymnasium_version(env_name: str) -> bool:
    import gymnasium

    return env_name in gymnasium.envs.registry


def _load(path: pathlib.Path, runs: list[int] | None, seed: int):
    """Runs `runs` of `path` (None: every run) as deterministic `RunPolicy`s, whichever algorithm trained them,
    read in one go (`load_policies`: all from the same save)."""
    from mjx_dacer.policy import load_policies

    try:
        return load_policies(path, runs, deterministic=True, seed=seed)
    except ValueError as e:  # ConfigError is one too: keep its text, make it the CLI's kind of error
        raise ConfigError(str(e).splitlines()[0]) from None


def _backends(requested: str | None, env_name: str) -> tuple[str, ...]:
    has_gym = _has_gymnasium_version(env_name)
    if requested is None:
        return ("mjx", "gymnasium") if has_gym else ("mjx",)
    if requested != "mjx" and not has_gym:
        raise ConfigError(f"--backend {requested}: {env_name} has no Gymnasium counterpart (it exists only "
                          "in mjx_dacer.envs); use --backend mjx")
    return ("mjx", "gymnasium") if requested == "both" else (requested,)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print progress and the results table; returns the exit status (0)."""
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    if not args.all_runs and args.run < 0:
        raise ConfigError(f"--run must be >= 0, got {args.run}")

    # mjx_dacer.envs first: it picks the headless OpenGL backend before mujoco is imported.
    from mjx_dacer import envs

    if args.video is not None:
        try:  # a format or an encoder it cannot have: said before any episode
            envs.check_video_path(args.video)
        except (ValueError, RuntimeError) as e:
            raise ConfigError(f"--video {args.video}: {e}") from None

    policies = _load(args.run_dir, None if args.all_runs else [args.run], args.seed)
    first = policies[0]
    for line in getattr(first, "skipped", ()):  # read from an older checkpoint: say so, as a resume does
        print(f"warning: {line} is unusable, skipped", flush=True)
    backends = _backends(args.backend, first.env_name)
    config = first.config
    print(f"{config.env} {config.algo} policy from {args.run_dir}: iteration {first.iteration}, "
          f"{len(policies)} of {first.num_runs} run(s); backends: {', '.join(backends)}", flush=True)

    import jax
    import numpy as np

    env = rollout = video_traj = None
    want_video = args.video is not None
    renderable = True
    results: list[Result] = []
    for policy in policies:
        r = policy.run
        tag = f"run {r} ({policy.label}, seed {policy.seed})"
        needs_mjx = "mjx" in backends or (want_video and video_traj is None)
        if needs_mjx and env is None:
            env = envs.make(config.env, physics=config.physics)
            renderable = envs.can_render(env)
            # One compile for every run: the params are an argument, the structure is shared.
            rollout = envs.jit(env, functools.partial(mjx_episodes, env, policy.act),
                               static_argnames=("num_episodes", "episode_length", "record"))
        key = jax.random.PRNGKey(args.seed)
        record = want_video and renderable  # the same for every run: one compile
        for backend in backends:
            if backend == "mjx":
                note = "" if results else "; compiling first, about a minute on a CPU"
                physics = f" ({config.physics} physics)" if getattr(env, "physics", None) else ""
                print(f"{tag}: mjx backend{physics}, {args.episodes} episode(s) of up to "
                      f"{env.episode_length} steps{note}...", flush=True)
                episodes = jax.device_get(rollout(policy.params, key, num_episodes=args.episodes,
                                                  episode_length=env.episode_length, record=record))
                returns, lengths = episodes.returns, episodes.lengths
                if record and video_traj is None:
                    video_traj = _trim(episodes)
            else:
                print(f"{tag}: gymnasium backend (C MuJoCo), {args.episodes} episode(s)...", flush=True)
                returns, lengths = gymnasium_rollout(policy, config.env, args.episodes, args.seed)
            results.append(Result(r, policy.label, policy.seed, backend, np.asarray(returns), np.asarray(lengths)))
        if record and video_traj is None:  # gymnasium only: the video needs an MJX episode of its own
            print(f"{tag}: one mjx episode for the video...", flush=True)
            video_traj = _trim(jax.device_get(rollout(policy.params, key, num_episodes=1,
                                                      episode_length=env.episode_length, record=True)))

    print(format_table(results, show_runs=args.all_runs), flush=True)
    if want_video:
        _write_video(env, video_traj, args.video, renderable, config.env)
    return 0


def _trim(episodes) -> _Trajectory:
    """Episode 0's initial state and its states after each step until termination."""
    length = int(episodes.lengths[0])
    return _Trajectory(qpos=episodes.qpos[: length + 1], qvel=episodes.qvel[: length + 1])


def _write_video(env, traj: _Trajectory | None, path: pathlib.Path, renderable: bool, env_name: str) -> None:
    """Renders `traj` to `path`; raises VideoNotWritten (exit status 1, after the printed results) if it cannot."""
    from mjx_dacer import envs

    if not renderable or traj is None:
        raise VideoNotWritten(f"{env_name} cannot be rendered")
    print(f"rendering {len(traj.qpos)} frames to {path}...", flush=True)
    try:
        frames = envs.render(env, traj)
        path.parent.mkdir(parents=True, exist_ok=True)
        envs.write_video(frames, path, fps=1.0 / env.dt)
    except (envs.RenderError, RuntimeError, ImportError) as e:  # no OpenGL backend, or the encoder failed
        raise VideoNotWritten(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    print(f"video: {path}", flush=True)


def format_table(results: Sequence[Result], show_runs: bool = False) -> str:
    """Backend, episodes, mean +- std return, min, max, mean episode length; one row per (run, backend)."""
    import numpy as np

    header = (["run", "label", "seed"] if show_runs else []) + [
        "backend", "episodes", "return (mean +- std)", "min", "max", "mean length"]
    rows = []
    for res in results:
        ret = np.asarray(res.returns, np.float64)
        cells = [str(res.run), res.label, str(res.seed)] if show_runs else []
        cells += [res.backend, str(len(ret)), f"{ret.mean():.2f} +- {ret.std():.2f}", f"{ret.min():.2f}",
                  f"{ret.max():.2f}", f"{np.mean(res.lengths):.1f}"]
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
