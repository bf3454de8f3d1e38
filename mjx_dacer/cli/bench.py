"""Benchmarks: ``mjx-dacer bench NAME``.

Each benchmark lives in ``mjx_dacer/benchmarks/<name>.py`` and defines
``add_arguments(parser)`` and ``run(args) -> int``. Results are printed as a
Markdown table that names the device, the JAX version and the command, and
can be written to a file with ``--out``.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "gmm": "on-device GMM entropy estimate vs scikit-learn, state by state",
    "envs": "environment steps per second per task, physics profile and batch size",
    "train": "training iterations per second, on-device program vs a host loop",
    "profile": "one training iteration part by part (env step, acting, buffer, update, entropy estimate)",
    "build": "the chunk program's build before a run's first iteration: shapes, trace, lower, XLA compile",
}


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds one subcommand per benchmark to `mjx-dacer bench`'s parser."""
    sub = parser.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    for name, help_text in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_DefaultsFormatter)
        module = _module(name)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in --help, without writing it into each help string.

    An option whose help already says its default in words (e.g. one that depends on the device)
    keeps only those words.
    """

    def _get_help_string(self, action):
        if "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _module(name: str):
    return importlib.import_module(f"mjx_dacer.benchmarks.{name}")

