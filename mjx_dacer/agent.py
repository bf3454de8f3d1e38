"""The interface between an algorithm and the training program (DESIGN.md, "Host side").

`mjx_dacer.train.TrainProgram` drives any object with these methods: it
acts with `behaviour_action`, stores transitions in the replay buffer, calls
`update` on sampled batches and evaluates with `eval_action`. The buffer,
the evaluation episodes, checkpoints, resume, sweeps and the runner never
look inside the agent's state. `mjx_dacer.dacer.DACER` is one such agent; `mjx_dacer.sac`
(SAC, DSAC-T) and `mjx_dacer.td3` (TD3, DDPG) hold the others (`mjx_dacer.agents` names them).

Contract on the state returned by `init`: a pytree whose leaves may gain a
leading vmap axis per run, except `step` (int32 scalar, updates done), which
is the same for every seed and grid point and so stays unbatched: keeping
it out of the vmap keeps `lax.cond`s on it (policy delay, entropy interval)
real branches. The divergence guard checks every floating-point leaf of
the state (parameters, optimiser moments, running statistics) for
non-finite values, besides the update's metrics.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

from mjx_dacer.buffer import Transition
from mjx_dacer.config import HParams

AgentState = Any  # a flax.struct dataclass with an int32 `step` field
Metrics = dict[str, jax.Array]


class Agent(Protocol):
    """What the training program needs from an algorithm; all methods are pure and jit-able.

    Shapes: N = number of states, S = observation size, A = action size;
    actions lie in [-1, 1].
    """

    obs_size: int
    action_size: int

    def init(self, key: jax.Array) -> AgentState:
        """Fresh parameters and optimiser states, `step` = 0."""

    def behaviour_action(self, state: AgentState, obs: jax.Array, key: jax.Array, hparams: HParams) -> jax.Array:
        """Exploring actions for the training environments: obs (N, S) -> (N, A)."""

    def eval_action(self, state: AgentState, obs: jax.Array, key: jax.Array) -> jax.Array:
        """The actions evaluation episodes use (no exploration noise): obs (N, S) -> (N, A)."""

    def update(
        self, state: AgentState, batch: Transition, key: jax.Array, hparams: HParams
    ) -> tuple[AgentState, Metrics]:
        """One gradient update on a batch with leading axis N; metrics are float32 scalars.

        The metric names and shapes must not depend on the data: the program
        traces them once to fill iterations without updates (the warm-up).
        """

    def exported_action(self, export: dict[str, Any], obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """Actions from one run's `policy_export` (no batch axis): eval_action's if deterministic, else behaviour's."""

    def action_value(self, state: AgentState, obs: jax.Array, action: jax.Array) -> jax.Array:
        """The critics' estimate of Q(s, a) that the actor maximises (the minimum over twin critics'
        means): obs (N, S), action (N, A) -> (N,). For analyses (Fig. 2's value function); not used in training."""

    def policy_export(self, state: AgentState, hparams: HParams) -> dict[str, Any]:
        """What `mjx_dacer.policy.save_policy` stores of the policy, as its keyword arguments.

        Picks fields only (no computation), so it works on a batched state and
        HParams alike; the runner calls it on the whole run axis.
        """
