"""`mjx-dacer train` and `mjx-dacer sweep`: resolve the config and the runs, then `mjx_dacer.run`.

Everything here is about the command line: flags, presets named by task,
`--grid` syntax, `--resume` checks and the hints printed when a run stops.
Errors are raised as ConfigError; `mjx_dacer.cli.main` maps them to exit codes.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import pathlib
import re
import shutil
from typing import Sequence

from mjx_dacer.config import (
    ConfigError, check_sweepable, load_config, parse_overrides, preset_names, split_assignment,
)
from mjx_dacer.errors import RunStopped


def add_arguments(p: argparse.ArgumentParser, ablate: bool = False) -> None:
    """train's and sweep's options; with `ablate`, those `mjx-dacer ablate` takes (DACER only, no --resume: each
    panel is a run directory of its own under --out)."""
    from mjx_dacer import agents

    if ablate:
        p.set_defaults(algo=None, resume=None)
    else:
        p.add_argument("--algo", choices=agents.names(), help="algorithm (default: the config's, dacer); a "
                       "baseline also takes the paper's Table 2 settings over the task's preset (--set still wins)")
    p.add_argument("--env", help="task name, e.g. Hopper-v5 (default: the config's env; "
                   "its preset configs/<task>.yaml is used when --config is not given)")
    p.add_argument("--config", help=f"YAML file or preset name ({', '.join(preset_names())})")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="number of seeds, run as one vmapped program (default: 1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set lr_actor=3e-4 (repeatable)")
    if ablate:
        p.add_argument("--out", type=pathlib.Path, metavar="DIR",
                       help="folder of the panels' run directories (default: runs/<env>-ablations-<time>)")
        p.add_argument("--overwrite", action="store_true", help="replace an earlier ablate folder")
    else:
        p.add_argument("--out", type=pathlib.Path, metavar="DIR",
                       help="run directory (default: runs/<env>-<time>)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
        p.add_argument("--resume", type=pathlib.Path, metavar="RUN_DIR",
                       help="continue an interrupted run from its newest usable checkpoint (its config is reused; "
                            "--env/--config/--set/--seeds, if given, must match it, except --set "
                            "total_iterations=N with a larger N: train a finished run longer); PPO keeps the seeds "
                            "that finished and trains the others from their start")
    p.add_argument("--verbose", action="store_true",
                   help="a progress line for every checkpoint (default: the first one and slow ones)")
    p.add_argument("--track", metavar="PROJECT",
                   help="also log to Weights & Biases project PROJECT, one W&B run per grid point and seed "
                        "(needs wandb: pip install 'mjx_dacer[wandb]'; off by default)")
    # No argparse default: --algo ppo / trpo refuse the option only when it is given.
    p.add_argument("--on-divergence", choices=("stop", "drop"),
                   help="when a run produces a non-finite loss, Q value or parameter: stop at the end of the "
                        "chunk keeping the last good checkpoint (default), or drop: freeze that run at its last "
                        "good state and continue the others (it stops when none is left)")


def parse_grid(specs: Sequence[str]) -> tuple[dict[str, float], ...]:
    """--grid values ["lr_actor=1e-4,3e-4", "noise_scale=0.1,0.15"] -> the Cartesian product as dicts."""
    axes: list[tuple[str, list[float]]] = []
    for spec in specs:
        key, values = split_assignment(spec, "--grid", "key=v1,v2,...")
        if key in dict(axes):
            raise ConfigError(f"--grid '{key}' is given twice; list all its values in one --grid {key}=v1,v2,...")
        check_sweepable(key, "--grid key")
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


def resolve_config(args: argparse.Namespace):
    from mjx_dacer import envs

    from mjx_dacer import agents

    overrides = parse_overrides(args.overrides)
    if args.env is not None:
        overrides["env"] = args.env
    if args.algo is not None:
        overrides = {**agents.defaults(args.algo), "algo": args.algo, **overrides}
    path = args.config
    if path is None and args.env is not None:
        path = envs.preset(args.env)  # a task's own preset carries the paper's Table 3 values for it
    config = load_config(path, overrides)
    if config.env not in envs.names():
        try:
            envs.make(config.env)  # the registry's error lists the tasks and suggests a close match
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return config


def _holds_runs(path: pathlib.Path) -> bool:
    """Whether `path` is a run directory (its config.yaml), or a folder of run directories alone (`ablate`'s)."""
    if (path / "config.yaml").is_file():
        return True
    entries = list(path.iterdir())
    return bool(entries) and all((entry / "config.yaml").is_file() for entry in entries)


def prepare_out_dir(args: argparse.Namespace, env: str) -> pathlib.Path:
    """The run directory to write: absent or empty, or with --overwrite an earlier run's, removed here (only
    once every check of the options has passed). --overwrite never removes a folder that holds anything but
    runs, nor the working directory or a folder above it."""
    out = args.out or _default_out(env)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; choose another path")
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise ConfigError(f"run directory {out} already holds files; pass --overwrite to replace it "
                              "or --out to choose another")
        here = pathlib.Path.cwd().resolve()
        if out.resolve() == here or out.resolve() in here.parents:
            raise ConfigError(f"--overwrite would remove {out}, which holds the working directory; choose "
                              "another --out")
        if not _holds_runs(out):
            raise ConfigError(f"--overwrite replaces only an earlier run directory, and {out} holds other files "
                              "(no config.yaml); remove it yourself or choose another --out")
        shutil.rmtree(out)
    return out


def _requested_on_resume(args: argparse.Namespace, stored):
    """The config the options given with --resume ask for: --config's file in full if given, else the
    stored config with --env/--algo/--set applied (so only what the user typed is compared)."""
    overrides = parse_overrides(args.overrides)
    if args.env is not None:
        overrides["env"] = args.env
    if args.algo is not None:
        overrides["algo"] = args.algo
    if args.config is not None:
        return load_config(args.config, overrides)
    return stored.replace(**overrides) if overrides else stored


def _resume_target(args: argparse.Namespace, grid_specs: Sequence[str]):
    """The config (the stored one, or it made longer), spec and directory of --resume RUN_DIR, checked
    against any options given; every refusal is a one-line ConfigError that changes nothing."""
    from mjx_dacer import agents
    from mjx_dacer.rundir import RunDir, resumed_config
    from mjx_dacer.train import chunk_sizes

    run_dir = args.resume
    if not run_dir.is_dir():
        raise ConfigError(f"--resume {run_dir}: no such directory; pass the run directory of an earlier run")
    stored_dir, stored, spec = RunDir.open(run_dir)
    try:
        config = resumed_config(stored, _requested_on_resume(args, stored))
    except ConfigError as e:
        raise ConfigError(f"--resume {run_dir}: {e}") from None
    if args.seeds is not None and args.seeds != len(spec.seeds):
        raise ConfigError(f"--resume {run_dir} has {len(spec.seeds)} seed(s), --seeds {args.seeds} was given; "
                          "drop --seeds to resume it")
    if grid_specs and parse_grid(grid_specs) != spec.grid:
        raise ConfigError(f"--resume {run_dir} was swept over another grid; drop --grid to resume it")
    if not agents.checkpointed(stored.algo):
        # No checkpoints: the seeds that finished are kept and the others train again (`on_policy.run` checks).
        return config, spec, run_dir
    steps = stored_dir.checkpoint_steps()
    # The policies are written with every checkpoint: policy.msgpack, or an on-policy run's ALGO_params_seed*.pkl.
    policies = [stored_dir.policy] if stored_dir.policy.is_file() else sorted(run_dir.glob("*_params_seed*.pkl"))
    if not steps and policies:
        raise ConfigError(f"--resume {run_dir}: its checkpoints/ are gone (deleted or moved), so the run cannot go "
                          f"on; its results (metrics.csv, summary.md, {policies[0].name}) are intact; to train "
                          "further, start a new run with --out")
    if not steps:
        raise ConfigError(f"--resume {run_dir}: the run stopped before its first checkpoint, so there is nothing "
                          "to go on from (and no result to lose): start it again with --overwrite")
    # The last checkpoint's number: an on-policy run's epochs of eval_interval iterations (no warm-up chunk; a
    # length that is not a multiple is refused by its trainer's check); the shared program's chunks.
    if agents.on_policy(stored.algo):
        last = -(-config.total_iterations // config.eval_interval)
    else:
        last = len(chunk_sizes(config))
    if steps[-1] >= last:
        raise ConfigError(f"--resume {run_dir}: the run is finished (iteration {stored.total_iterations}); to train "
                          f"it longer: mjx-dacer train --resume {run_dir} --set total_iterations=N "
                          f"(N > {stored.total_iterations})")
    if config.total_iterations != stored.total_iterations:
        print(f"{run_dir}: total_iterations {stored.total_iterations} -> {config.total_iterations}: the run goes "
              "on to the new length", flush=True)
    return config, spec, run_dir


def _run(args: argparse.Namespace, grid_specs: Sequence[str]) -> int:
    from mjx_dacer import agents, sinks
    from mjx_dacer.rundir import RunSpec
    from mjx_dacer.runner import maybe_initialize_distributed, run

    sinks.check_tracking_available(args.track)  # before --overwrite removes anything
    if args.resume is not None:
        if args.overwrite or args.out is not None:
            raise ConfigError("--resume continues RUN_DIR in place; drop --out/--overwrite")
        config, spec, out = _resume_target(args, grid_specs)
        if agents.on_policy(config.algo):
            return _train_on_policy(args, config, grid_specs, resume=out)
    else:
        seeds = 1 if args.seeds is None else args.seeds
        if seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {seeds}")
        config = resolve_config(args)
        if agents.on_policy(config.algo):
            return _train_on_policy(args, config, grid_specs, seeds)
        spec = RunSpec(grid=parse_grid(grid_specs), seeds=tuple(range(seeds)))
        for g, point in enumerate(spec.grid):  # every grid point, before anything is written
            try:
                config.replace(**point)
            except ConfigError as e:
                raise ConfigError(f"--grid point {spec.label(g)}: {e}") from None
        out = prepare_out_dir(args, config.env)
    maybe_initialize_distributed()
    run(config, out, seeds=spec.seeds, grid=spec.grid, progress_fn=lambda line: print(line, flush=True),
        resume=args.resume is not None, on_divergence=args.on_divergence or "stop", track=args.track,
        verbose=args.verbose)
    _print_wall_clock(out)
    _print_done(out)
    return 0


def _train_on_policy(args: argparse.Namespace, config, grid_specs: Sequence[str], seeds: int = 1,
                     resume: pathlib.Path | None = None) -> int:
    """--algo ppo (brax's trainer, `mjx_dacer.ppo`) or trpo (`mjx_dacer.trpo`), once the options their trainers
    cannot honour are refused; with `resume`, that run directory goes on (checked by `_resume_target`)."""
    import functools
    import importlib

    algo = config.algo
    module = importlib.import_module(f"mjx_dacer.{algo}")
    if grid_specs:
        raise ConfigError(f"--grid: {algo} runs through its own on-policy trainer, one config per process (no "
                          f"vmapped grid); run `mjx-dacer train --algo {algo} --set KEY=VALUE` once per grid point")
    if args.on_divergence is not None:
        raise ConfigError(f"--on-divergence: {algo} runs through its own on-policy trainer, which has no divergence "
                          "guard; drop the option")
    module.check(config)  # the default settings, as `run` below: before --overwrite removes anything
    progress = functools.partial(print, flush=True)
    if resume is not None:
        out = resume
        module.run(config, out, resume=True, progress_fn=progress, track=args.track)
    else:
        out = prepare_out_dir(args, config.env)
        module.run(config, out, seeds=seeds, progress_fn=progress, track=args.track)
    _print_wall_clock(out)
    _print_done(out)
    return 0


# The order `_print_done` names a run directory's files in; others follow by name.
_OUTPUTS = ("config.yaml", "metrics.csv", "timing.csv", "summary.md", "curves.png", "tb/", "checkpoints/")


def _print_done(out: pathlib.Path) -> None:
    """The last two lines of a run: what its directory holds (tb/ only where tensorboardX wrote it; one
    pattern for per-seed files) and the commands that read it."""
    out = pathlib.Path(out)
    names = {re.sub(r"_seed\d+\.", "_seed*.", p.name) + ("/" if p.is_dir() else "") for p in out.iterdir()}
    names = sorted(names, key=lambda n: (_OUTPUTS.index(n) if n in _OUTPUTS else len(_OUTPUTS), n))
    tensorboard = f"  |  tensorboard --logdir {out}/tb" if (out / "tb").is_dir() else ""
    print(f"done: {out}/ ({', '.join(names)})\n"
          f"next: mjx-dacer eval {out}  |  mjx-dacer plot {out}{tensorboard}", flush=True)


def stop_hint(stopped: RunStopped) -> str:
    """What to do next after a stopped run, in this command line's terms."""
    if stopped.diverged and stopped.resume_dir is not None:
        return (f"; to go on with that run frozen: mjx-dacer train --resume {stopped.resume_dir} "
                "--on-divergence=drop")
    if stopped.diverged:
        return ""
    if stopped.resume_dir is not None:
        return f"; resume with: mjx-dacer train --resume {stopped.resume_dir}"
    return ""


def train(args: argparse.Namespace) -> int:
    return _run(args, [])


def sweep(args: argparse.Namespace) -> int:
    if not args.grid and args.resume is None:
        raise ConfigError("sweep needs --grid KEY=V1,V2,... (repeatable), or --resume RUN_DIR to go on with a "
                          "sweep's own grid")
    return _run(args, args.grid)


def _print_wall_clock(out: pathlib.Path) -> None:
    """summary.md's wall-clock sentence (from timing.csv), before the final lines."""
    from mjx_dacer import report
    from mjx_dacer.rundir import RunDir

    path = RunDir(pathlib.Path(out)).timing
    text = report.wall_clock_summary(report.read_rows(path)) if path.is_file() else None
    if text:
        print(text, flush=True)
