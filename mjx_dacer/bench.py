"""Benchmarks: ``mjx-dacer bench NAME`` or ``python -m mjx_dacer.bench NAME``.

Each benchmark lives in ``mjx_dacer/benchmarks/<name>.py`` and defines
``add_arguments(parser)`` and ``run(args) -> int``. Results are printed as a
Markdown table that names the device, the JAX version and the command, and
can be written to a file with ``--out``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "gmm": "on-device GMM entropy estimate vs scikit-learn, state by state",
    "envs": "environment steps per second per task, physics profile and batch size",
    "train": "training iterations per second, on-device program vs a host loop",
}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="mjx-dacer bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    for name, help_text in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _module(name).add_arguments(p)
    return parser


def _module(name: str):
    return importlib.import_module(f"mjx_dacer.benchmarks.{name}")


def run(args: argparse.Namespace) -> int:
    return _module(args.benchmark).run(args)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
