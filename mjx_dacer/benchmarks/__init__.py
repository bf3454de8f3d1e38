"""One module per benchmark; see ``mjx_dacer.cli.bench``."""

import argparse


def count(text: str) -> int:
    """argparse type of the benchmarks' sizes and repeat counts: a whole number >= 1 (0 would time nothing)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
