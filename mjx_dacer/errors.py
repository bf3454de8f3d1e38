"""Errors a user can cause outside the config, kept free of heavy imports so the CLI can map them cheaply.

`mjx_dacer.config.ConfigError` is the other one; `mjx_dacer.cli` maps both to
its one-line message and exit status 2.
"""


class CheckpointError(RuntimeError):
    """No usable checkpoint in a run directory (none written yet, or every one damaged)."""
