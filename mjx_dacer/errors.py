"""Errors a user can cause outside the config, kept free of heavy imports so the CLI can map them cheaply.

`mjx_dacer.config.ConfigError` is the other one; `mjx_dacer.cli` maps both to
its one-line message and exit status 2.
"""


class CheckpointError(RuntimeError):
    """A run directory's saved state is unusable: no usable checkpoint (none written yet, or every one
    damaged), or a policy file that is missing, foreign, from a newer mjx_dacer, damaged or truncated."""


class PolicyFileError(CheckpointError, ValueError):
    """A policy artifact (``policy.msgpack``) that cannot be read; the message is one line naming the file.

    Also a ValueError: `mjx_dacer.policy.load_policy` has always raised ValueError for a bad file, and
    callers (the eval CLI) catch that.
    """
