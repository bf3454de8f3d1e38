"""A trained policy at run time: the agent's structure, one run's parameters, a compiled step. No file IO.

`RunPolicy` is what every run's policy offers (`mjx-dacer eval` needs no
more); `Policy` is the shared program's agents' (DACER, SAC, DSAC-T, TD3,
DDPG). `mjx_dacer.policy` reads and writes the artifact file and builds a
`Policy` from it (`load_policy`); `mjx_dacer.brax_policy` builds PPO's and
TRPO's. This module only acts. Its names are importable from `mjx_dacer.policy`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from flax import struct

from mjx_dacer.agent import Agent
from mjx_dacer.config import Config

Params = Any


@struct.dataclass
class PolicyParams:
    """What one run's policy learned.

    network: the NoisePredictor's params (one run: no leading batch axis).
    log_alpha: () float32, log of the entropy regulator's alpha (Eq. 16 scales its noise by alpha).
    noise_scale: () float32, lambda of Eq. 16.
    """

    network: Params
    log_alpha: jax.Array
    noise_scale: jax.Array


def policy_action(agent: Agent, deterministic: bool, params: PolicyParams, obs: jax.Array, key: jax.Array) -> jax.Array:
    """Pure: obs (N, S) -> actions (N, A) in [-1, 1]; for DACER a0 of the chain, plus Eq. 16's noise unless deterministic."""
    export = {"policy_params": params.network, "log_alpha": params.log_alpha, "noise_scale": params.noise_scale}
    return agent.exported_action(export, obs, key, deterministic)


@functools.lru_cache(maxsize=None)
def _compiled_step(agent: Agent, deterministic: bool):
    """One jitted (params, obs (N, S), key) -> (actions (N, A), next key) per network structure.

    Cached on the (hashable, static) agent so that every Policy of one artifact
    shares one compilation; the params are an argument, not a constant.
    """

    def step(params: PolicyParams, obs: jax.Array, key: jax.Array):
        key, sub = jax.random.split(key)
        return policy_action(agent, deterministic, params, obs, sub), key

    return jax.jit(step)


class RunPolicy:
    """One run's trained policy, whatever trained it: numpy observation in, numpy action in [-1, 1] out.

    `Policy` (the diffusion and actor-critic policies of `policy.msgpack`) and
    `mjx_dacer.brax_policy.BraxPolicy` (PPO's and TRPO's) share this: a compiled
    step(params, obs (N, S), key) -> (actions (N, A), next key), and `act`, the
    pure function behind it for jitted code. Each call splits the internal key
    into (next key, action key), so a fresh policy with the same seed
    reproduces the same actions.

    Attributes:
      params: this run's parameters (an argument of `act`, not a constant).
      config: the run's Config; env_name is config.env.
      obs_size, action_size: S and A of the task.
      run, num_runs, label, seed: which of the run directory's B runs this is, its grid point label
        and its training seed.
      iteration: training iterations done when these parameters were saved.
      deterministic: True: the policy's deterministic action (evaluation); False: its behaviour noise added.
      key: the current PRNG key.
    """

    def __init__(self, step, params: Any, config: Config, obs_size: int, action_size: int, run: int, label: str,
                 seed: int, iteration: int, num_runs: int, deterministic: bool, key_seed: int):
        self._step = step
        self.params = params
        self.config = config
        self.env_name = config.env
        self.obs_size = int(obs_size)
        self.action_size = int(action_size)
        self.run = run
        self.label = label
        self.seed = seed
        self.iteration = iteration
        self.num_runs = num_runs
        self.deterministic = bool(deterministic)
        self.key = jax.random.PRNGKey(key_seed)

    def act(self, params: Any, obs: jax.Array, key: jax.Array) -> jax.Array:
        """The pure function behind `__call__`, for use inside jitted code: obs (N, S) -> (N, A)."""
        raise NotImplementedError

    def __call__(self, obs: Any) -> np.ndarray:
        """obs (S,) -> action (A,), or (N, S) -> (N, A); float32 in [-1, 1]."""
        obs = np.asarray(obs, np.float32)
        if obs.ndim not in (1, 2) or obs.shape[-1] != self.obs_size:
            raise ValueError(f"observation of shape {obs.shape}: this {self.env_name} policy expects "
                             f"({self.obs_size},) or (N, {self.obs_size})")
        action, self.key = self._step(self.params, obs.reshape(-1, self.obs_size), self.key)
        action = np.asarray(action)
        return action[0] if obs.ndim == 1 else action

    def __repr__(self) -> str:
        mode = "deterministic" if self.deterministic else "behaviour"
        return (f"{type(self).__name__}({self.env_name}, {self.config.algo}, run {self.run}/{self.num_runs} "
                f"'{self.label}' seed {self.seed}, iteration {self.iteration}, {mode})")


class Policy(RunPolicy):
    """One run of a `policy.msgpack` (DACER and the off-policy baselines), as a `RunPolicy`.

    deterministic: True: a0 of the chain (DACER) or the actor's mode (evaluation); False: the behaviour
    noise added (DACER: Eq. 16's, scaled by the run's alpha). `agent` is the agent structure (`config.algo`;
    its sizes and network widths); `params` its `PolicyParams`.
    """

    def __init__(self, agent: Agent, params: PolicyParams, config: Config, run: int, label: str, seed: int,
                 iteration: int, num_runs: int, deterministic: bool = True, key_seed: int = 0):
        self.agent = agent
        super().__init__(_compiled_step(agent, bool(deterministic)), params, config, agent.obs_size,
                         agent.action_size, run, label, seed, iteration, num_runs, deterministic, key_seed)

    def act(self, params: PolicyParams, obs: jax.Array, key: jax.Array) -> jax.Array:
        return policy_action(self.agent, self.deterministic, params, obs, key)


__all__ = ["Policy", "PolicyParams", "RunPolicy", "policy_action"]
