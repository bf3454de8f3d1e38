"""`mjx-dacer`: train, sweep, evaluate and benchmark DACER from the command line.

Exit statuses, mapped in one place (`main`):

    0    done
    2    bad input: unknown task, preset or key, wrong type, out-of-range values,
         an existing run directory or file at --out, a run directory without a
         usable checkpoint or policy (one line on stderr, nothing written)
    3    stopped: a run diverged (see --on-divergence)
    130  stopped by Ctrl-C (SIGINT), 143 by SIGTERM; the newest checkpoint is kept
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import logging
import os
import pathlib
import shutil
import sys
from typing import Sequence

from mjx_dacer.config import (
    HPARAM_FIELDS, ConfigError, error_line, load_config, parse_overrides, preset_for_env, preset_names,
)
from mjx_dacer.errors import CheckpointError

EXIT_USAGE = 2
USER_ERRORS = (ConfigError, CheckpointError)  # one line on stderr, exit EXIT_USAGE

EPILOG = """examples:
  mjx-dacer train --config quickstart
  mjx-dacer train --env Hopper-v5 --seeds 5
  mjx-dacer train --env Humanoid-v5 --seeds 5 --out runs/humanoid
  mjx-dacer sweep --env Hopper-v5 --grid lr_actor=1e-4,3e-4 --grid noise_scale=0.1,0.15 --seeds 3
  mjx-dacer train --resume runs/humanoid
  mjx-dacer eval runs/humanoid --episodes 10 --backend both --video humanoid.mp4
  mjx-dacer bench gmm
"""


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", help="task name, e.g. Hopper-v5 (default: the config's env; "
                   "its preset configs/<task>.yaml is used when --config is not given)")
    p.add_argument("--config", help=f"YAML file or preset name ({', '.join(preset_names())})")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="number of seeds, run as one vmapped program (default: 1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set lr_actor=3e-4 (repeatable)")
    p.add_argument("--out", type=pathlib.Path, metavar="DIR",
                   help="run directory (default: runs/<env>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--resume", type=pathlib.Path, metavar="RUN_DIR",
                   help="continue an interrupted run from its newest usable checkpoint (its config is reused; "
                        "--env/--config/--set/--seeds, if given, must match it)")
    p.add_argument("--on-divergence", choices=("stop", "drop"), default="stop",
                   help="when a run produces a non-finite loss, Q value or parameter: stop at the end of the "
                        "chunk keeping the last good checkpoint (default), or drop: freeze that run at its last "
                        "good state and continue the others")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mjx-dacer",
        description="DACER (Diffusion Actor-Critic with Entropy Regulator) on MuJoCo MJX, "
                    "end to end on the accelerator.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser(
        "train", help="train DACER on one task, several seeds at once",
        description="Train DACER. All seeds run as one vmapped program; the host only reports between "
                    "chunks of eval_interval iterations. Writes config.yaml, metrics.csv, TensorBoard "
                    "events (tb/), curves.png and summary.md to the run directory.",
    )
    _add_run_arguments(train)
    train.set_defaults(func=_train)

    sweep = sub.add_parser(
        "sweep", help="grid search over hyperparameters x seeds in one vmapped program",
        description="Grid search: every grid point x seed runs in one vmapped program. Only "
                    f"shape-free hyperparameters can be swept: {', '.join(HPARAM_FIELDS)}.",
    )
    _add_run_arguments(sweep)
    sweep.add_argument("--grid", action="append", default=[], required=True, metavar="KEY=V1,V2,...",
                       help="values of one hyperparameter (repeatable; the grid is their product)")
    sweep.set_defaults(func=_sweep)

    from mjx_dacer import bench, evaluation_cli

    evaluate = sub.add_parser("eval", help="returns of a trained policy in MJX and in Gymnasium's C-MuJoCo env",
                              description=evaluation_cli.DESCRIPTION)
    evaluation_cli.add_arguments(evaluate)
    evaluate.set_defaults(func=evaluation_cli.run)

    bench_parser = sub.add_parser("bench", help="speed benchmarks (gmm, envs, train)",
                                  description=bench.__doc__.splitlines()[0])
    bench.build_parser(bench_parser)
    return parser


def parse_grid(specs: Sequence[str]) -> tuple[dict[str, float], ...]:
    """--grid values ["lr_actor=1e-4,3e-4", "noise_scale=0.1,0.15"] -> the Cartesian product as dicts."""
    axes: list[tuple[str, list[float]]] = []
    for spec in specs:
        if "=" not in spec:
            raise ConfigError(f"--grid '{spec}' is not of the form key=v1,v2,...")
        key, values = spec.split("=", 1)
        key = key.strip()
        if key not in HPARAM_FIELDS:
            raise ConfigError(
                f"--grid key '{key}' cannot be swept in one program (it changes shapes or is not a "
                f"hyperparameter); sweepable keys: {', '.join(HPARAM_FIELDS)}"
            )
        try:
            parsed = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--grid '{spec}': values must be numbers separated by commas") from None
        if not parsed:
            raise ConfigError(f"--grid '{spec}' lists no values")
        axes.append((key, parsed))
    if not axes:
        return ({},)
    names = [k for k, _ in axes]
    return tuple(dict(zip(names, combo)) for combo in itertools.product(*(v for _, v in axes)))


def _default_out(env: str) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("runs") / f"{env}-{stamp}"


def _resolve_config(args: argparse.Namespace):
    overrides = parse_overrides(args.overrides)
    if args.env is not None:
        overrides["env"] = args.env
    path = args.config
    if path is None and args.env is not None:
        path = preset_for_env(args.env)  # a task's own preset carries the paper's Table 3 values for it
    config = load_config(path, overrides)
    from mjx_dacer import envs

    if config.env not in envs.names():
        try:
            envs.make(config.env)  # the registry's error lists the tasks and suggests a close match
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return config


def _prepare_out_dir(args: argparse.Namespace, env: str) -> pathlib.Path:
    out = args.out or _default_out(env)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; choose another path")
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise ConfigError(f"run directory {out} already holds files; pass --overwrite to replace it "
                              "or --out to choose another")
        shutil.rmtree(out)
    return out


def _resume_target(args: argparse.Namespace, grid_specs: Sequence[str]):
    """The stored config and spec of --resume RUN_DIR, checked against any options given."""
    from mjx_dacer.config import to_dict
    from mjx_dacer.rundir import RunDir

    run_dir = args.resume
    if not run_dir.is_dir():
        raise ConfigError(f"--resume {run_dir}: no such directory; pass the run directory of an earlier run")
    stored_dir, config, spec = RunDir.open(run_dir)
    if not stored_dir.has_checkpoint():
        raise ConfigError(f"--resume {run_dir}: the run stopped before its first checkpoint; start it again with "
                          "--overwrite (or lower checkpoint_interval)")
    if args.env is not None or args.config is not None or args.overrides:
        given = to_dict(_resolve_config(args))
        stored = to_dict(config)
        diff = [k for k in stored if stored[k] != given[k]]
        if diff:
            k = diff[0]
            raise ConfigError(f"--resume {run_dir} holds another config ({k}: {stored[k]!r} there, {given[k]!r} "
                              "given); drop the config options to resume it, or start a new run with --out")
    if args.seeds is not None and args.seeds != len(spec.seeds):
        raise ConfigError(f"--resume {run_dir} has {len(spec.seeds)} seed(s), --seeds {args.seeds} was given; "
                          "drop --seeds to resume it")
    if grid_specs and parse_grid(grid_specs) != spec.grid:
        raise ConfigError(f"--resume {run_dir} was swept over another grid; drop --grid to resume it")
    return config, spec, run_dir


def _run(args: argparse.Namespace, grid_specs: Sequence[str]) -> int:
    from mjx_dacer.rundir import RunSpec
    from mjx_dacer.runner import RunStopped, maybe_initialize_distributed, run

    if args.resume is not None:
        if args.overwrite or args.out is not None:
            raise ConfigError("--resume continues RUN_DIR in place; drop --out/--overwrite")
        config, spec, out = _resume_target(args, grid_specs)
    else:
        seeds = 1 if args.seeds is None else args.seeds
        if seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {seeds}")
        config = _resolve_config(args)
        spec = RunSpec(grid=parse_grid(grid_specs), seeds=tuple(range(seeds)))
        spec.validate(config)  # every grid point, before anything is written
        out = _prepare_out_dir(args, config.env)
    maybe_initialize_distributed()
    try:
        run(config, out, seeds=spec.seeds, grid=spec.grid, progress_fn=lambda line: print(line, flush=True),
            resume=args.resume is not None, on_divergence=args.on_divergence)
    except RunStopped as e:
        hint = ""
        if e.diverged:
            hint = " (--on-divergence=drop)"
        elif e.resume_dir is not None:
            hint = f"; resume with: mjx-dacer train --resume {e.resume_dir}"
        print(f"mjx-dacer: {e}{hint}", file=sys.stderr, flush=True)
        if e.abandoned:
            # A compile or chunk is still running in a worker thread and its result is not wanted:
            # leave now, instead of letting interpreter shutdown wait for it.
            sys.stdout.flush()
            os._exit(e.exit_code)
        return e.exit_code
    print(f"done: {out}/ (summary.md, metrics.csv, curves.png, tb/, checkpoints/)", flush=True)
    return 0


def _train(args: argparse.Namespace) -> int:
    return _run(args, [])


def _sweep(args: argparse.Namespace) -> int:
    return _run(args, args.grid)


def main(argv: Sequence[str] | None = None) -> int:
    # orbax reports a damaged checkpoint file through absl's logger before raising; the runner
    # already names each skipped checkpoint in one line, so keep the library's log off the terminal.
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"mjx-dacer: error: {error_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mjx-dacer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
