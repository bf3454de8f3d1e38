"""`mjx-dacer multigoal RUN_DIR...`: the paper's Fig. 2 and 3 and the multimodality number.

For each MultiGoal-v0 run directory (DACER's, a baseline's), 100 trajectories of
the behaviour policy from each of the paper's five start points: a Markdown
table of how many goals at least 5% of them reach and the entropy of the goal
distribution (`mjx_dacer.multigoal`), with `--figure` one panel of trajectories
per run directory, side by side (Fig. 3), and with `--field` one panel per run
directory of the value V(s) over the plane and the behaviour actions as arrows
(Fig. 2; it reads the critics from the newest checkpoint, so PPO and TRPO runs, whose
value network is no Q(s, a), are refused there).
"""

from __future__ import annotations

import argparse
import pathlib

from mjx_dacer.cli.results import check_out_file
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
    from mjx_dacer import policy as policy_module
    from mjx_dacer.policy import load_policy

    if args.trajectories < 1:
        raise ConfigError(f"--trajectories must be >= 1, got {args.trajectories}")
    if args.run < 0:
        raise ConfigError(f"--run must be >= 0, got {args.run}")
    for option, path, image in (("--out", args.out, False), ("--figure", args.figure, True),
                                ("--field", args.field, True)):
        if path is not None:  # before the rollouts
            check_out_file(path, option, image=image)
    if args.field is not None:  # before the rollouts: the field needs the shared program's critics
        on_policy = [str(d) for d in args.run_dirs if policy_module.on_policy_run(d)]
        if on_policy:
            raise ConfigError(f"--field needs a run's Q critics, and {', '.join(on_policy)} trained an on-policy "
                              "algorithm (a value network V(s) only); drop --field for it (Fig. 3 and the table work)")
    results = []
    for run_dir in args.run_dirs:
        try:
            policy = load_policy(run_dir, run=args.run, deterministic=False, seed=args.seed)
        except ValueError as e:  # ConfigError is one too: keep its text, make it the CLI's kind of error
            raise ConfigError(str(e).splitlines()[0]) from None
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
        multigoal.draw_trajectories([(f"{policy.config.algo}: {run_dir.name}", paths)
                                     for run_dir, policy, paths, _ in results], args.figure)
        print(f"figure: {args.figure}", flush=True)
    if args.field is not None:
        _draw_fields(args.run_dirs, args.run, args.seed, args.field)
        print(f"value and action field: {args.field}", flush=True)
    return 0


def _draw_fields(run_dirs, run: int, seed: int, path: pathlib.Path) -> None:
    """Fig. 2 of each run directory's newest checkpoint, side by side."""
    from mjx_dacer import multigoal, trained

    panels = []
    for run_dir in run_dirs:
        loaded = trained.load(run_dir)
        if loaded.config.env != "MultiGoal-v0":
            raise ConfigError(f"{run_dir} trained {loaded.config.env}, not MultiGoal-v0")
        field = multigoal.value_field(loaded.agent, *loaded.run(run), seed=seed)
        panels.append((f"{loaded.config.algo}: {run_dir.name} (iteration {loaded.iteration})", field))
    multigoal.draw_value_fields(panels, path)
