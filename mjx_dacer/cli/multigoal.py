"""`mjx-dacer multigoal RUN_DIR...`: the paper's Fig. 3 (trajectories from five start points) and its number.

For each MultiGoal-v0 run directory (DACER's, a baseline's), 100 trajectories of
the behaviour policy from each of the paper's five start points: a Markdown
table of how many goals at least 5% of them reach and the entropy of the goal
distribution (`mjx_dacer.multigoal`), and with `--figure` one panel of
trajectories per run directory, side by side.
"""

from __future__ import annotations

import argparse
import pathlib

from mjx_dacer.config import ConfigError



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", type=pathlib.Path, metavar="RUN_DIR", help="MultiGoal-v0 run directories")
    p.add_argument("--trajectories", type=int, default=100, metavar="N", help="per start point (default: 100)")
    p.add_argument("--run", type=int, default=0, help="which run of each directory (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rollouts (default: 0)")
    p.add_argument("--out", type=pathlib.Path, metavar="FILE", help="also write the table to FILE")
    p.add_argument("--figure", type=pathlib.Path, metavar="PNG", help="draw the trajectories to PNG")


def run(args: argparse.Namespace) -> int:
    from mjx_dacer import multigoal
    from mjx_dacer.policy import load_policy

    if args.trajectories < 1:
        raise ConfigError(f"--trajectories must be >= 1, got {args.trajectories}")
    results = []
    for run_dir in args.run_dirs:
        policy = load_policy(run_dir, run=args.run, deterministic=False, seed=args.seed)
        if policy.env_name != "MultiGoal-v0":
            raise ConfigError(f"{run_dir} trained {policy.env_name}, not MultiGoal-v0")
        paths, goals = multigoal.rollouts(policy, trajectories=args.trajectories, seed=args.seed)
        results.append((run_dir, policy, paths, multigoal.multimodality(goals)))
    lines = [
        f"Multi-goal: {args.trajectories} behaviour-policy trajectories from each start point (run {args.run}); "
        f"goals = how many of the 4 goals >= {multigoal.REACHED_FRACTION:.0%} of them reach, entropy of the "
        "reached-goal distribution in nats (log 4 = 1.386), none = fraction reaching no goal.",
        "",
        "| run | algo | iteration | start | goals | entropy | none |",
        "|---|---|---|---|---|---|---|",
    ]
    for run_dir, policy, _, stats in results:
        for start, m in zip(multigoal.START_POINTS, stats):
            lines.append(f"| {run_dir} | {policy.config.algo} | {policy.iteration} | ({start[0]:g}, {start[1]:g}) | "
                         f"{m['goals_reached']} | {m['goal_entropy']:.3f} | {m['none']:.2f} |")
    text = "\n".join(lines)
    print(text, flush=True)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.figure is not None:
        _draw(results, args.figure)
        print(f"figure: {args.figure}", flush=True)
    return 0


def _draw(results, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mjx_dacer.envs.multigoal import GOALS

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 4), squeeze=False)
    for ax, (run_dir, policy, paths, _) in zip(axes[0], results):
        for start_paths in paths:  # (N, T + 1, 2) per start point
            for xy in start_paths:
                ax.plot(xy[:, 0], xy[:, 1], lw=0.5, alpha=0.4)
        for gx, gy in GOALS:
            ax.add_patch(plt.Circle((gx, gy), 1.0, fill=False, color="k"))
        ax.set(xlim=(-7, 7), ylim=(-7, 7), aspect="equal", title=f"{policy.config.algo}: {run_dir.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
