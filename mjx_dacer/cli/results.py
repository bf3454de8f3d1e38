"""`mjx-dacer table RUN_DIR...` and `mjx-dacer plot RUN_DIR...`: results across run directories.

Both read only config.yaml and metrics.csv (and `table --reach`, timing.csv) of each run directory
(`mjx_dacer.report.open_runs`), group the runs by (task, algorithm, grid
label) and pool several directories of one group by seed. The computing and
formatting live in `mjx_dacer.report`; this module parses and prints.
Heavy imports (JAX via the report module, matplotlib) happen inside the
commands, so building the CLI parser stays fast.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

from mjx_dacer.config import ConfigError

TABLE_DESCRIPTION = (
    "Print the paper's Table 1 for the given run directories: per task (rows, in the paper's order) and "
    "algorithm (columns), mean +- std over seeds of the highest evaluation return in the last 10% of "
    "iterations. Directories of the same task and algorithm are pooled by seed; directories that share a seed "
    "are told apart by the config keys that differ (or their folder). With --reach RETURN instead: "
    "per seed, when its evaluation return first reached RETURN (iteration, env steps, wall clock)."
)
PLOT_DESCRIPTION = (
    "Plot learning curves of the given run directories: one subplot per task, one line per algorithm (and grid "
    "label, if several), mean over seeds with a bootstrap 95% CI of the mean (1000 resamples; no band for one seed)."
)


def _run_dirs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", type=pathlib.Path, nargs="+", metavar="RUN_DIR",
                        help="run directories of `mjx-dacer train` / `sweep` (several seeds' runs are pooled)")


def add_table_arguments(parser: argparse.ArgumentParser) -> None:
    _run_dirs(parser)
    parser.add_argument("--format", choices=("markdown", "latex"), default="markdown",
                        help="output format (default: markdown)")
    parser.add_argument("--paper", action="store_true",
                        help="add the paper's Table 1 value beside each algorithm's column ('-' where it has none)")
    parser.add_argument("--reach", type=float, metavar="RETURN",
                        help="instead of Table 1: per seed, the first evaluation whose return reached RETURN, its "
                             "iteration, env steps and wall clock (from timing.csv); Markdown")
    parser.add_argument("--out", type=pathlib.Path, metavar="FILE",
                        help="also write the table to FILE (overwritten)")


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    _run_dirs(parser)
    parser.add_argument("--x", choices=("iterations", "env_steps"), default="iterations",
                        help="x axis: iterations after the warm-up, or env steps (default: iterations)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("curves_by_task.png"), metavar="FILE",
                        help="PNG to write (default: curves_by_task.png; overwritten)")


def check_out_file(path: pathlib.Path, option: str = "--out", image: bool = False) -> None:
    """An output file the command may write, checked before any work: not a directory, in an existing one; with
    `image`, a format matplotlib writes (its suffix). Raises ConfigError (one line)."""
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise ConfigError(f"{option} {path}: the directory {path.parent} does not exist")
    if image:
        from matplotlib.backend_bases import FigureCanvasBase

        kinds = FigureCanvasBase.get_supported_filetypes()
        if path.suffix.lower().lstrip(".") not in kinds:
            raise ConfigError(f"{option} {path}: not an image format matplotlib writes; end it in one of "
                              f"{', '.join('.' + k for k in sorted(kinds))}")


def table(args: argparse.Namespace) -> int:
    from mjx_dacer import report

    if args.out is not None:
        check_out_file(args.out)
    if args.reach is not None and (args.format != "markdown" or args.paper):
        raise ConfigError("--reach prints its own Markdown table; it takes neither --format latex nor --paper")
    if args.reach is not None and not math.isfinite(args.reach):
        raise ConfigError(f"--reach must be a finite return, got {args.reach}")
    groups = report.pool_by_seed(report.open_runs(args.run_dirs))
    if args.reach is not None:
        text = report.reach_table(groups, args.reach)
    else:
        text = report.results_table(groups, fmt=args.format, with_paper=args.paper)
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text)
        print(f"mjx-dacer: wrote {args.out}", file=sys.stderr)
    return 0


def plot(args: argparse.Namespace) -> int:
    from mjx_dacer import report

    check_out_file(args.out, image=True)
    groups = report.pool_by_seed(report.open_runs(args.run_dirs))
    fig = report.plot_by_task(groups, args.out, x=args.x)
    print(f"wrote {args.out}: {len(fig.axes)} task(s), {len(groups)} line(s)")
    return 0
