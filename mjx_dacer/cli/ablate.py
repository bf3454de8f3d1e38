"""`mjx-dacer ablate`: the paper's ablations (Sec. 5.3, Walker2d) as runs of the ordinary pipeline.

Three panels, each a set of run directories under OUT that `mjx-dacer plot OUT/*`
and `mjx-dacer table OUT/*` read:

  regulator   OUT/regulator: DACER beside DAC, the diffusion policy without the entropy
              regulator: no added noise (noise_scale 0: pure Q-maximisation through
              the chain, as the paper describes DAC). One program, two grid points.
  noise       OUT/noise: DACER's adaptive alpha beside a fixed noise factor lambda * alpha = 0.1
              and a noise factor falling linearly from 0.27 to 0.1 over the run (alpha held
              at initial_alpha by lr_alpha 0; lambda = 0.1 / initial_alpha, or 0.27 /
              initial_alpha with noise_decay = 1 - 0.1 / 0.27). One program, three grid points.
  steps       OUT/steps-T10, OUT/steps-T20, OUT/steps-T30: diffusion steps T = 10, 20, 30
              (T changes shapes: one program each).
"""

from __future__ import annotations

import argparse
import pathlib

from mjx_dacer.config import Config, ConfigError

PANELS = ("regulator", "noise", "steps")
DIFFUSION_STEPS = (10, 20, 30)
FIXED_NOISE = 0.1  # the noise factor lambda * alpha of the paper's fixed-noise curve
DECAY_NOISE = (0.27, 0.1)  # its decaying curve: lambda * alpha from the first to the second, linearly


def runs(config: Config, panel: str) -> list[tuple[str, Config, tuple[dict, ...]]]:
    """(sub-directory, config, grid) of each program a panel runs, on top of `config`."""
    if panel == "regulator":
        return [("regulator", config, ({}, {"noise_scale": 0.0}))]
    if panel == "noise":
        fixed = {"noise_scale": FIXED_NOISE / config.initial_alpha, "lr_alpha": 0.0}
        decaying = {"noise_scale": DECAY_NOISE[0] / config.initial_alpha,
                    "noise_decay": 1.0 - DECAY_NOISE[1] / DECAY_NOISE[0], "lr_alpha": 0.0}
        return [("noise", config, ({}, fixed, decaying))]
    return [(f"steps-T{t}", config.replace(diffusion_steps=t), ({},)) for t in DIFFUSION_STEPS]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mjx_dacer.cli import train

    train.add_arguments(p, ablate=True)
    p.add_argument("--panel", action="append", choices=PANELS, metavar="PANEL",
                   help=f"run only these panels ({', '.join(PANELS)}; repeatable; default: all three)")


def run(args: argparse.Namespace) -> int:
    from mjx_dacer.cli import train as train_cli
    from mjx_dacer.rundir import RunSpec
    from mjx_dacer.runner import maybe_initialize_distributed
    from mjx_dacer.runner import run as run_training

    if args.env is None and args.config is None:
        args.env = "Walker2d-v5"  # the paper's ablation task
    seeds = 1 if args.seeds is None else args.seeds
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    config = train_cli.resolve_config(args)
    plan = [r for panel in (args.panel or PANELS) for r in runs(config, panel)]
    for _, cfg, grid in plan:
        RunSpec(grid=grid, seeds=tuple(range(seeds))).validate(cfg)  # all of them, before anything is written
    out = train_cli.prepare_out_dir(args, f"{config.env}-ablations")
    maybe_initialize_distributed()
    for name, cfg, grid in plan:
        print(f"== {name}: {', '.join(RunSpec(grid=grid, seeds=()).label(g) for g in range(len(grid)))}",
              flush=True)
        run_training(cfg, pathlib.Path(out) / name, seeds=seeds, grid=grid,
                     progress_fn=lambda line: print(line, flush=True), on_divergence=args.on_divergence or "stop",
                     track=args.track, verbose=args.verbose)
    print(f"done: {out}/ ({', '.join(name for name, _, _ in plan)}); "
          f"draw them with: mjx-dacer plot {out}/*", flush=True)
    return 0
