"""A run directory's trained agent, critics included, from its newest checkpoint.

`policy.msgpack` holds the policy alone; analyses that need the critics too
(Fig. 2's value function over the Multi-goal plane) read the checkpoint here.
Read-only: unlike a resuming run, it never deletes an unusable checkpoint.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax

from mjx_dacer import agents
from mjx_dacer.agent import Agent
from mjx_dacer.config import Config, ConfigError, HParams
from mjx_dacer.errors import CheckpointError
from mjx_dacer.rundir import RunDir, RunSpec


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """The agent of one run directory and its state after `iteration` iterations.

    state and hparams carry the run axis R of the (grid point, seed) entries of `spec`.
    """

    config: Config
    spec: RunSpec
    agent: Agent
    state: Any  # AgentState, leaves (R, ...) but its update count `step` (shared by all runs)
    hparams: HParams  # leaves (R,)
    iteration: int
    state_axes: Any  # the run axis of each leaf of `state`: 0, or None for the shared counters
    obs_size: int
    action_size: int

    def run(self, index: int) -> tuple[Any, HParams]:
        """The agent state and HParams of run `index` (no run axis)."""
        if not 0 <= index < len(self.spec.entries):
            raise CheckpointError(f"run {index} does not exist: this run directory has runs "
                                  f"0..{len(self.spec.entries) - 1} ({', '.join(self.spec.labels)})")
        state = jax.tree.map(lambda x, axis: x if axis is None else x[index], self.state, self.state_axes)
        return state, jax.tree.map(lambda x: x[index], self.hparams)


def load(path: str | pathlib.Path) -> TrainedRun:
    """The newest usable checkpoint of run directory `path`, as a `TrainedRun`.

    Raises ConfigError if `path` is not a run directory of the shared program
    (a PPO or TRPO run is not) and CheckpointError if it has no usable checkpoint.
    """
    from mjx_dacer.checkpoint import Checkpointer
    from mjx_dacer.train import make_train

    run_dir, config, spec = RunDir.open(path)
    if agents.on_policy(config.algo):
        raise ConfigError(f"{path} is a {config.algo} run: its policies are brax's networks "
                          f"({config.algo}_params_seed*.pkl), not the shared program's agent and critics this "
                          "reads; mjx-dacer eval, table, plot and multigoal (without --field) read it")
    if not run_dir.has_checkpoint():
        raise CheckpointError(f"{path} has no checkpoints: a run's whole training state (its policy with the "
                              "critics) is saved only there (train it again, or keep its checkpoints/)")
    program = make_train(config)
    keys, hparams = spec.inputs(config)
    abstract = jax.eval_shape(program.init_batch, keys, hparams)
    checkpointer = Checkpointer(run_dir.path, read_only=True)
    try:
        restored = checkpointer.restore(abstract)
    finally:
        checkpointer.close()
    return TrainedRun(config=config, spec=spec, agent=program.agent, state=restored.state.agent,
                      hparams=hparams, iteration=program.iterations_after(restored.chunks_done),
                      state_axes=program.state_axes.agent, obs_size=program.env.observation_size,
                      action_size=program.env.action_size)
