"""A trained policy at run time: the agent's structure, one run's parameters, a compiled step. No file IO.

`mjx_dacer.policy` reads and writes the artifact file and builds a `Policy`
from it (`load_policy`); this module only acts. Both names are importable
from `mjx_dacer.policy`.
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


class Policy:
    """One run's trained policy: numpy observation in, numpy action in [-1, 1] out.

    Each call splits the internal key into (next key, chain key) and samples the
    reverse chain with the chain key, so a fresh Policy with the same seed
    reproduces the same actions.

    Attributes:
      agent: the agent structure (`config.algo`; sizes S = obs_size, A = action_size, network widths).
      params: `PolicyParams` of this run.
      config: the run's Config; env_name is config.env.
      run, num_runs, label, seed: which of the artifact's B runs this is, its grid point label
        and its training seed.
      iteration: training iterations done when the artifact was written.
      deterministic: True: a0 of the chain (evaluation); False: Eq. 16's behaviour noise added.
      key: the current PRNG key.
    """

    def __init__(self, agent: Agent, params: PolicyParams, config: Config, run: int, label: str, seed: int,
                 iteration: int, num_runs: int, deterministic: bool = True, key_seed: int = 0):
        self.agent = agent
        self.params = params
        self.config = config
        self.env_name = config.env
        self.run = run
        self.label = label
        self.seed = seed
        self.iteration = iteration
        self.num_runs = num_runs
        self.deterministic = bool(deterministic)
        self.key = jax.random.PRNGKey(key_seed)
        self._step = _compiled_step(agent, self.deterministic)

    @property
    def obs_size(self) -> int:
        return self.agent.obs_size

    @property
    def action_size(self) -> int:
        return self.agent.action_size

    def act(self, params: PolicyParams, obs: jax.Array, key: jax.Array) -> jax.Array:
        """The pure function behind `__call__`, for use inside jitted code: obs (N, S) -> (N, A)."""
        return policy_action(self.agent, self.deterministic, params, obs, key)

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
        return (f"Policy({self.env_name}, run {self.run}/{self.num_runs} '{self.label}' seed {self.seed}, "
                f"iteration {self.iteration}, {mode})")


__all__ = ["Policy", "PolicyParams", "policy_action"]
