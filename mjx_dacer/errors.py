"""Errors a user can cause outside the config, and a stopped run; free of heavy imports so the CLI can map them cheaply.

`mjx_dacer.config.ConfigError` is the other user error; `mjx_dacer.cli.main`
maps both to a one-line message and exit status 2, and `RunStopped` to its
own exit status.
"""

from __future__ import annotations

import pathlib
import signal

# The exit status of a run stopped by a signal (`RunStopped.exit_code`).
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class CheckpointError(RuntimeError):
    """A run directory's saved state is unusable: no usable checkpoint (none written yet, or every one
    damaged), or a policy file that is missing, foreign, from a newer mjx_dacer, damaged or truncated."""


class PolicyFileError(CheckpointError, ValueError):
    """A policy artifact (``policy.msgpack``) that cannot be read; the message is one line naming the file.

    Also a ValueError: `mjx_dacer.policy.load_policy` has always raised ValueError for a bad file, and
    callers (the eval CLI) catch that.
    """


class VideoNotWritten(RuntimeError):
    """The video a command was asked for could not be made (no OpenGL backend, a task that cannot be
    drawn, the encoder failed); what the command printed before it stands. The CLI's exit status: 1."""


class RunStopped(Exception):
    """A run stopped before its end.

    Attributes:
      exit_code: what a command line should return (3: diverged; 130 / 143: SIGINT / SIGTERM).
      resume_dir: the run directory to resume from, if it holds a checkpoint to resume.
      diverged: a run diverged (on_divergence="stop").
      abandoned: a compile or chunk was still running in the worker thread when
        the run stopped (SIGTERM, or a second Ctrl-C); its result is discarded.
    """

    def __init__(self, message: str, exit_code: int, *, resume_dir: pathlib.Path | None = None,
                 diverged: bool = False, abandoned: bool = False):
        super().__init__(message)
        self.exit_code = exit_code
        self.resume_dir = resume_dir
        self.diverged = diverged
        self.abandoned = abandoned
