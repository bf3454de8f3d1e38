"""`mjx-dacer export RUN_DIR`: write policy.msgpack again from the run's newest checkpoint.

The run writes policy.msgpack at every checkpoint; this recovers it when it was
deleted, damaged or truncated, from the checkpoint that holds the whole state.
The checkpoints are only read.
"""

from __future__ import annotations

import argparse
import pathlib


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=pathlib.Path, metavar="RUN_DIR", help="a run directory with checkpoints/")


def run(args: argparse.Namespace) -> int:
    from mjx_dacer import trained
    from mjx_dacer.policy import export_policy

    loaded = trained.load(args.run_dir)
    path = export_policy(args.run_dir, loaded.config, loaded.agent, loaded.state, loaded.hparams,
                         labels=loaded.spec.labels, seeds=[s for _, s in loaded.spec.entries],
                         iteration=loaded.iteration, obs_size=loaded.obs_size, action_size=loaded.action_size)
    print(f"wrote {path} ({len(loaded.spec.entries)} run(s), iteration {loaded.iteration}); "
          f"evaluate it with: mjx-dacer eval {args.run_dir}", flush=True)
    return 0
