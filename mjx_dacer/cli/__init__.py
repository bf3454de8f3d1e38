"""`mjx-dacer`: train, sweep, evaluate and benchmark DACER from the command line.

Exit statuses, mapped in one place (`main`):

    0    done
    1    the system refused a file operation (permission, disk full, a read-only
         folder): one line naming the error and the path; the device or host ran
         out of memory; or `eval --video` could not render the video (no OpenGL
         backend), after the results
    2    bad input: unknown task, preset or key, wrong type, out-of-range values,
         an existing run directory or file at --out, a run directory without a
         usable checkpoint or policy (one line on stderr, nothing written)
    3    stopped: a run diverged (see --on-divergence)
    130  stopped by Ctrl-C (SIGINT), 143 by SIGTERM; the newest checkpoint is kept
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Sequence

from mjx_dacer import __version__, compile_cache
from mjx_dacer.cli import ablate, bench, evaluate, export, multigoal, train
from mjx_dacer.config import HPARAM_FIELDS, ConfigError, describe, error_line
from mjx_dacer.errors import CheckpointError, RunStopped, VideoNotWritten

EXIT_USAGE = 2
EXIT_OS = 1  # the system refused: a file operation (permission, disk full), memory, or rendering a video
USER_ERRORS = (ConfigError, CheckpointError)  # one line on stderr, exit EXIT_USAGE

EPILOG = """examples:
  mjx-dacer train --config quickstart
  mjx-dacer train --env Hopper-v5 --seeds 5
  mjx-dacer train --env Humanoid-v5 --seeds 5 --out runs/humanoid
  mjx-dacer sweep --env Hopper-v5 --grid lr_actor=1e-4,3e-4 --grid noise_scale=0.1,0.15 --seeds 3
  mjx-dacer train --resume runs/humanoid
  mjx-dacer eval runs/humanoid --episodes 10 --backend both --video humanoid.mp4
  mjx-dacer export runs/humanoid
  mjx-dacer train --algo sac --env Hopper-v5 --seeds 5
  mjx-dacer ablate --env Walker2d-v5 --seeds 5 --out runs/ablations
  mjx-dacer table runs/* --paper
  mjx-dacer bench gmm

environment:
  MJX_DACER_COMPILATION_CACHE  where compiled programs are kept, so that a resume or a rerun of the same
                               config skips XLA's compile (default ~/.cache/mjx_dacer/xla; 'off' turns it
                               off; JAX_COMPILATION_CACHE_DIR, if set, wins); bench runs without it
"""


CONFIG_KEYS = "config keys (--set KEY=VALUE; traced keys can also be swept with --grid):\n" + "\n".join(
    f"  {line}" for line in describe().splitlines())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mjx-dacer",
        description="DACER (Diffusion Actor-Critic with Entropy Regulator) on MuJoCo MJX, "
                    "end to end on the accelerator.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mjx-dacer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train_parser = sub.add_parser(
        "train", help="train DACER (or a baseline, --algo) on one task, several seeds at once",
        description="Train DACER. All seeds run as one vmapped program; the host only reports between "
                    "chunks of eval_interval iterations. Writes config.yaml, metrics.csv, timing.csv, TensorBoard "
                    "events (tb/), curves.png, summary.md, checkpoints/ and policy.msgpack to the run directory.",
        epilog=CONFIG_KEYS, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_arguments(train_parser)
    train_parser.set_defaults(func=train.train)

    sweep_parser = sub.add_parser(
        "sweep", help="grid search over hyperparameters x seeds in one vmapped program",
        description="Grid search: every grid point x seed runs in one vmapped program. Only "
                    f"shape-free hyperparameters can be swept: {', '.join(HPARAM_FIELDS)}.",
        epilog=CONFIG_KEYS, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_arguments(sweep_parser)
    sweep_parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                              help="values of one hyperparameter (repeatable; the grid is their product); "
                                   "required, except with --resume (the run's grid)")
    sweep_parser.set_defaults(func=train.sweep)

    eval_parser = sub.add_parser("eval", help="returns of a trained policy in MJX and in Gymnasium's C-MuJoCo env",
                                 description=evaluate.DESCRIPTION)
    evaluate.add_arguments(eval_parser)
    eval_parser.set_defaults(func=evaluate.run)

    export_parser = sub.add_parser("export", help="write policy.msgpack again from a run's newest checkpoint",
                                   description=export.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_arguments(export_parser)
    export_parser.set_defaults(func=export.run)

    from mjx_dacer.cli import results  # table / plot: read run directories only

    table_parser = sub.add_parser("table", help="the paper's Table 1 (Markdown or LaTeX) across run directories",
                                  description=results.TABLE_DESCRIPTION)
    results.add_table_arguments(table_parser)
    table_parser.set_defaults(func=results.table)

    plot_parser = sub.add_parser("plot", help="learning curves per task across run directories (PNG)",
                                 description=results.PLOT_DESCRIPTION)
    results.add_plot_arguments(plot_parser)
    plot_parser.set_defaults(func=results.plot)

    ablate_parser = sub.add_parser("ablate", help="the paper's ablations (Sec. 5.3) as run directories",
                                   description=ablate.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ablate.add_arguments(ablate_parser)
    ablate_parser.set_defaults(func=ablate.run)

    multigoal_parser = sub.add_parser("multigoal", help="Multi-goal value, trajectories, multimodality (Fig. 2, 3)",
                                      description=multigoal.__doc__,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
    multigoal.add_arguments(multigoal_parser)
    multigoal_parser.set_defaults(func=multigoal.run)

    bench_parser = sub.add_parser("bench", help="speed benchmarks (gmm, envs, train, profile, build)",
                                  description=bench.__doc__.splitlines()[0])
    bench.build_parser(bench_parser)
    return parser


class Terminated(Exception):
    """SIGTERM outside a training run's own handler (e.g. while the program is built)."""


def _terminate(signum, frame) -> None:
    raise Terminated()


class _PythonThreadsOnly:
    """sys.stderr for the CLI: what Python's own threads write (the main thread, the runner's worker, warnings),
    dropped where a thread that a native library started writes (Python sees it as a dummy thread): tensorstore's
    reports of reads that outlived a failed restore, the only such writes a run makes."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        if isinstance(threading.current_thread(), threading._DummyThread):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name):  # flush, fileno, isatty, encoding, ...: the real stream's
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    # orbax reports a damaged checkpoint file through absl's logger before raising; the runner
    # already names each skipped checkpoint in one line, so keep the library's log off the terminal.
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    # Restoring a damaged checkpoint fails while tensorstore still has reads in flight on orbax's event loop;
    # their late results then meet a closed loop, once per read: asyncio's logger and tensorstore's own threads
    # print a traceback each (hundreds of lines before the one-line warning that names the skipped checkpoint).
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if not isinstance(sys.stderr, _PythonThreadsOnly):
        sys.stderr = _PythonThreadsOnly(sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":  # benchmarks time cold compiles
        compile_cache.disable()
    else:
        compile_cache.enable()
    # A SIGTERM before a run installs its own handler (which finishes or keeps a checkpoint) would end
    # the process silently; say so instead. The runner restores this handler when it is done.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"mjx-dacer: error: {error_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # the file system's refusal, not the program's state: its own words and the path
        where = f": {e.filename}" if e.filename else ""
        print(f"mjx-dacer: error: {e.strerror or type(e).__name__}{where}", file=sys.stderr)
        return EXIT_OS
    except VideoNotWritten as e:  # the system could not render: as a refused file, after the printed results
        print(f"mjx-dacer: error: no video: {e}", file=sys.stderr)
        return EXIT_OS
    except (MemoryError, RuntimeError) as e:  # XLA's RESOURCE_EXHAUSTED is a RuntimeError (XlaRuntimeError)
        if not isinstance(e, MemoryError) and "RESOURCE_EXHAUSTED" not in str(e):
            raise
        print(f"mjx-dacer: error: out of memory ({error_line(e) if str(e) else type(e).__name__}); lower num_envs, "
              "batch_size, buffer_capacity or the number of seeds and grid points", file=sys.stderr)
        return EXIT_OS
    except RunStopped as e:
        print(f"mjx-dacer: {e}{train.stop_hint(e)}", file=sys.stderr, flush=True)
        if e.abandoned:
            # A compile or chunk is still running in a worker thread and its result is not wanted:
            # leave now, instead of letting interpreter shutdown wait for it.
            sys.stdout.flush()
            os._exit(e.exit_code)
        return e.exit_code
    except KeyboardInterrupt:
        print("mjx-dacer: interrupted by Ctrl-C (SIGINT); stopped at once", file=sys.stderr)
        return 130
    except Terminated:
        print("mjx-dacer: stopped by SIGTERM; stopped at once", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)
