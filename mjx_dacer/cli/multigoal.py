"""`mjx-dacer multigoal RUN_DIR...`: the paper's Fig. 2 and 3 and the multimodality number.

For each MultiGoal-v0 run directory (DACER's, a baseline's), 100 trajectories of
the behaviour policy from each of the paper's five start points: a Markdown
table of how many goals at least 5% of them reach and the entropy of the goal
distribution (`mjx_dacer.multigoal`), with `--figure` one panel of trajectories
per run directory, side by side (Fig. 3), and with `--field` one panel per run
directory of the value V(s) over the plane and the behaviour actions as arrows
(Fig. 2; it reads the critics from the newest checkpoint).
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
    p.add_argument("--figure", type=pathlib.Path, metavar="PNG", help="draw the trajectories (Fig. 3) to PNG")
    p.add_argument("--field", type=pathlib.Path, metavar="PNG",
                   help="draw the value function and action field (Fig. 2) to PNG, from each run's newest checkpoint")


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
    if args.field is not None:
        _draw_fields(args.run_dirs, args.run, args.seed, args.field)
        print(f"value and action field: {args.field}", flush=True)
    return 0


def _panels(count: int):
    """A figure of `count` square panels of the plane, side by side, with the goals drawn on each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mjx_dacer.envs.multigoal import GOALS
    from mjx_dacer.multigoal import PLANE

    fig, axes = plt.subplots(1, count, figsize=(4.3 * count, 4), squeeze=False)
    for ax in axes[0]:
        for gx, gy in GOALS:
            ax.add_patch(plt.Circle((gx, gy), 1.0, fill=False, color="k"))
        ax.set(xlim=(-PLANE, PLANE), ylim=(-PLANE, PLANE), aspect="equal")
    return fig, axes[0]


def _save(fig, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw(results, path: pathlib.Path) -> None:
    fig, axes = _panels(len(results))
    for ax, (run_dir, policy, paths, _) in zip(axes, results):
        for start_paths in paths:  # (N, T + 1, 2) per start point
            for xy in start_paths:
                ax.plot(xy[:, 0], xy[:, 1], lw=0.5, alpha=0.4)
        ax.set_title(f"{policy.config.algo}: {run_dir.name}")
    _save(fig, path)


ARROWS_EVERY = 2  # arrows on every 2nd grid point and for 4 of the sampled actions: readable, still multimodal
ARROWS_PER_STATE = 4


def _draw_fields(run_dirs, run: int, seed: int, path: pathlib.Path) -> None:
    """Fig. 2: per run directory, V(s) as filled contours and behaviour actions as arrows."""
    import numpy as np

    from mjx_dacer import multigoal, trained

    fields = []
    for run_dir in run_dirs:
        loaded = trained.load(run_dir)
        if loaded.config.env != "MultiGoal-v0":
            raise ConfigError(f"{run_dir} trained {loaded.config.env}, not MultiGoal-v0")
        fields.append((run_dir, loaded, multigoal.value_field(loaded.agent, *loaded.run(run), seed=seed)))
    fig, axes = _panels(len(fields))
    for ax, (run_dir, loaded, (xs, values, actions)) in zip(axes, fields):
        contour = ax.contourf(xs, xs, values, levels=20, cmap="viridis")
        fig.colorbar(contour, ax=ax, fraction=0.046, label="V(s) (critic units)")
        pick = slice(None, None, ARROWS_EVERY)
        x, y = [c[pick, pick] for c in np.meshgrid(xs, xs)]
        for m in range(min(ARROWS_PER_STATE, actions.shape[2])):
            a = actions[pick, pick, m]
            ax.quiver(x, y, a[..., 0], a[..., 1], color="w", alpha=0.7, angles="xy", scale_units="xy", scale=1.5,
                      width=0.004)
        ax.set_title(f"{loaded.config.algo}: {run_dir.name} (iteration {loaded.iteration})")
    _save(fig, path)
