"""TD3 and DDPG: the deterministic-policy baselines (DACER_SPEC §9).

Agents of `mjx_dacer.agent.Agent`, trained by the same program as DACER.
Exploration adds N(0, 0.1^2) to the policy's action (Table 2). TD3 in its
standard form (Fujimoto et al. 2018): twin critics with the clipped double-Q
target, target-policy smoothing (noise N(0, 0.2^2) clipped to +-0.5), and
delayed actor and target updates every `policy_delay` critic updates. DDPG:
one critic, no smoothing; its actor and targets follow the same
`policy_delay` (Table 2's policy update interval, shared by every baseline).

Reads from Config the network sizes and activations and `policy_delay`; from
HParams the learning rates, `reward_scale`, `gamma` and `tau`.

Shapes: N = batch size, S = observation size, A = action size, C = critics (2 or 1).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjx_dacer import losses
from mjx_dacer.buffer import Transition
from mjx_dacer.config import Config, HParams
from mjx_dacer.networks import DeterministicPolicy, TwinQ
from mjx_dacer.optim import adam, adam_step

Params = Any

EXPLORATION_STD = 0.1  # Table 2: N(0, 0.1^2) behaviour noise
SMOOTHING_STD, SMOOTHING_CLIP = 0.2, 0.5  # TD3's target-policy smoothing


@struct.dataclass
class TD3State:
    """Everything TD3 / DDPG learn or count; leaves may carry leading vmap axes (except `step`)."""

    policy_params: Params
    target_policy_params: Params
    critic_params: Params  # C critics, leaves stacked on a leading axis of C
    target_critic_params: Params
    policy_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    actor_loss: jax.Array  # scalar: the latest actor loss
    step: jax.Array  # int32 scalar: number of updates done


def _noisy(action: jax.Array, key: jax.Array, std: float, clip: float | None = None) -> jax.Array:
    noise = std * jax.random.normal(key, action.shape)
    if clip is not None:
        noise = jnp.clip(noise, -clip, clip)
    return jnp.clip(action + noise, -1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class TD3:
    """Static structure of TD3 (DDPG: the subclass below)."""

    config: Config
    obs_size: int
    action_size: int
    num_critics = 2
    target_smoothing = True

    @functools.cached_property
    def policy_net(self) -> DeterministicPolicy:
        return DeterministicPolicy(self.action_size, self.config.hidden_sizes, self.config.activation)

    @functools.cached_property
    def critic_net(self) -> TwinQ:
        return TwinQ(self.config.critic_hidden_sizes, self.config.critic_activation, self.num_critics)

    def init(self, key: jax.Array) -> TD3State:
        k_policy, k_critic = jax.random.split(key)
        obs, act = jnp.zeros((1, self.obs_size)), jnp.zeros((1, self.action_size))
        policy_params = self.policy_net.init(k_policy, obs)
        critic_params = self.critic_net.init(k_critic, obs, act)
        return TD3State(
            policy_params=policy_params, target_policy_params=policy_params, critic_params=critic_params,
            target_critic_params=critic_params, policy_opt_state=adam.init(policy_params),
            critic_opt_state=adam.init(critic_params), actor_loss=jnp.float32(0.0), step=jnp.int32(0),
        )

    # ------------------------------------------------------ the Agent interface
    def exported_action(self, export: dict[str, Any], obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        action = self.policy_net.apply(export["policy_params"], obs)
        return action if deterministic else _noisy(action, key, EXPLORATION_STD)

    def behaviour_action(self, state: TD3State, obs: jax.Array, key: jax.Array, hparams: HParams) -> jax.Array:
        return _noisy(self.policy_net.apply(state.policy_params, obs), key, EXPLORATION_STD)

    def eval_action(self, state: TD3State, obs: jax.Array, key: jax.Array) -> jax.Array:
        del key  # deterministic
        return self.policy_net.apply(state.policy_params, obs)

    def action_value(self, state: TD3State, obs: jax.Array, action: jax.Array) -> jax.Array:
        """min over the critics (TD3's clipped double Q; DDPG's one critic). (N, S), (N, A) -> (N,)."""
        return jnp.min(self.critic_net.apply(state.critic_params, obs, action), axis=0)

    def policy_export(self, state: TD3State, hparams: HParams) -> dict[str, Any]:
        """The actor's parameters of each run (log_alpha and noise_scale are DACER's: zeros)."""
        zeros = jnp.zeros_like(hparams.noise_scale)
        return {"policy_params": state.policy_params, "log_alpha": zeros, "noise_scale": zeros}

    def update(
        self, state: TD3State, batch: Transition, key: jax.Array, hparams: HParams
    ) -> tuple[TD3State, dict[str, jax.Array]]:
        """Critics every call (clipped double-Q for TD3); actor and Polyak targets every `policy_delay` calls."""
        next_action = self.policy_net.apply(state.target_policy_params, batch.next_obs)
        if self.target_smoothing:
            next_action = _noisy(next_action, key, SMOOTHING_STD, SMOOTHING_CLIP)
        q_next = self.critic_net.apply(state.target_critic_params, batch.next_obs, next_action)
        y = losses.soft_q_targets(q_next, 0.0, batch.reward, batch.terminated, hparams.reward_scale, hparams.gamma)
        q_fn = functools.partial(self.critic_net.apply, obs=batch.obs, action=batch.action)
        (critic_loss, q), grads = jax.value_and_grad(losses.q_loss, has_aux=True)(state.critic_params, q_fn, y)
        critic_params, critic_opt_state = adam_step(state.critic_params, grads, state.critic_opt_state,
                                                    hparams.lr_critic)

        def actor_step(_):
            loss, grads = jax.value_and_grad(losses.deterministic_actor_loss)(
                state.policy_params,
                lambda p: self.policy_net.apply(p, batch.obs),
                lambda a: self.critic_net.apply(state.critic_params, batch.obs, a)[0],
            )
            params, opt_state = adam_step(state.policy_params, grads, state.policy_opt_state, hparams.lr_actor)
            target_policy = optax.incremental_update(params, state.target_policy_params, hparams.tau)
            target_critics = optax.incremental_update(critic_params, state.target_critic_params, hparams.tau)
            return params, opt_state, target_policy, target_critics, loss

        def actor_skip(_):
            return (state.policy_params, state.policy_opt_state, state.target_policy_params,
                    state.target_critic_params, state.actor_loss)

        policy_params, policy_opt_state, target_policy_params, target_critic_params, actor_loss = jax.lax.cond(
            state.step % self.config.policy_delay == 0, actor_step, actor_skip, None
        )
        new_state = TD3State(
            policy_params=policy_params, target_policy_params=target_policy_params, critic_params=critic_params,
            target_critic_params=target_critic_params, policy_opt_state=policy_opt_state,
            critic_opt_state=critic_opt_state, actor_loss=actor_loss, step=state.step + 1,
        )
        metrics = {"critic_loss": critic_loss, "actor_loss": actor_loss, "q_mean": jnp.mean(q),
                   "td_error": jnp.mean((y - q) ** 2), "target_mean": jnp.mean(y)}
        return new_state, metrics


@dataclasses.dataclass(frozen=True)
class DDPG(TD3):
    """DDPG: one critic, no target-policy smoothing (Lillicrap et al. 2016, with Table 2's settings)."""

    num_critics = 1
    target_smoothing = False
