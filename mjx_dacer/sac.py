"""SAC and DSAC-T: the tanh-Gaussian maximum-entropy baselines with automatic alpha (DACER_SPEC §9).

An `mjx_dacer.agent.Agent`, trained by the same program, buffer, evaluation
and runner as DACER. It reads the same Config: `hidden_sizes` /
`critic_hidden_sizes` / `activation` / `critic_activation` for its networks,
`initial_alpha`, `policy_delay`, and from HParams the learning rates,
`reward_scale`, `gamma`, `tau` and `target_entropy_factor` (H_target =
-factor * dim(A); the paper's SAC uses -dim(A)). The keys of the diffusion
policy (`diffusion_steps`, `noise_scale`, the entropy estimate's) are unused.

Every call updates the twin critics against the soft target; every
`policy_delay` calls the actor, alpha and the Polyak targets are updated
(Table 2's policy update interval).

Shapes: N = batch size, S = observation size, A = action size.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjx_dacer import losses
from mjx_dacer.buffer import Transition
from mjx_dacer.config import Config, HParams
from mjx_dacer.networks import TanhGaussianPolicy, TwinCritic, TwinQ
from mjx_dacer.optim import adam, adam_step

Params = Any


@struct.dataclass
class SacState:
    """Everything SAC learns or counts; leaves may carry leading vmap axes (except `step`)."""

    policy_params: Params
    critic_params: Params  # twin critics, leaves stacked on a leading axis of 2
    target_critic_params: Params
    policy_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    log_alpha: jax.Array  # scalar
    entropy: jax.Array  # scalar: -mean log pi at the latest actor update
    actor_loss: jax.Array  # scalar: the latest actor loss
    step: jax.Array  # int32 scalar: number of updates done


@dataclasses.dataclass(frozen=True)
class SAC:
    """Static structure of SAC: the config's static fields and the task's sizes."""

    config: Config
    obs_size: int
    action_size: int

    @functools.cached_property
    def policy_net(self) -> TanhGaussianPolicy:
        return TanhGaussianPolicy(self.action_size, self.config.hidden_sizes, self.config.activation)

    @functools.cached_property
    def critic_net(self) -> TwinQ:
        return TwinQ(self.config.critic_hidden_sizes, self.config.critic_activation)

    def init(self, key: jax.Array) -> SacState:
        k_policy, k_critic = jax.random.split(key)
        obs, act = jnp.zeros((1, self.obs_size)), jnp.zeros((1, self.action_size))
        policy_params = self.policy_net.init(k_policy, obs)
        critic_params = self.critic_net.init(k_critic, obs, act)
        log_alpha = jnp.float32(math.log(self.config.initial_alpha))
        return SacState(
            policy_params=policy_params, critic_params=critic_params, target_critic_params=critic_params,
            policy_opt_state=adam.init(policy_params), critic_opt_state=adam.init(critic_params),
            alpha_opt_state=adam.init(log_alpha), log_alpha=log_alpha, entropy=jnp.float32(0.0),
            actor_loss=jnp.float32(0.0), step=jnp.int32(0),
        )

    def target_entropy(self, hparams: HParams) -> jax.Array:
        return -hparams.target_entropy_factor * self.action_size

    def sample(self, policy_params: Params, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """a ~ pi(.|s) and log pi(a|s): obs (N, S) -> ((N, A), (N,))."""
        mean, log_std = self.policy_net.apply(policy_params, obs)
        return losses.tanh_gaussian_sample(mean, log_std, key)

    def mean_action(self, policy_params: Params, obs: jax.Array) -> jax.Array:
        """tanh(mean(s)): obs (N, S) -> (N, A)."""
        return jnp.tanh(self.policy_net.apply(policy_params, obs)[0])

    # ------------------------------------------------------ the Agent interface
    def behaviour_action(self, state: SacState, obs: jax.Array, key: jax.Array, hparams: HParams) -> jax.Array:
        return self.sample(state.policy_params, obs, key)[0]

    def eval_action(self, state: SacState, obs: jax.Array, key: jax.Array) -> jax.Array:
        del key  # deterministic
        return self.mean_action(state.policy_params, obs)

    def policy_export(self, state: SacState, hparams: HParams) -> dict[str, Any]:
        """The actor's parameters and log_alpha of each run (noise_scale is DACER's and unused: zeros)."""
        return {"policy_params": state.policy_params, "log_alpha": state.log_alpha,
                "noise_scale": jnp.zeros_like(hparams.noise_scale)}

    def exported_action(self, export: dict[str, Any], obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic:
            return self.mean_action(export["policy_params"], obs)
        return self.sample(export["policy_params"], obs, key)[0]

    def action_value(self, state: SacState, obs: jax.Array, action: jax.Array) -> jax.Array:
        """min_j Q_j(s, a), as the actor's loss reads it. (N, S), (N, A) -> (N,)."""
        return jnp.min(self.q_values(state.critic_params, obs, action), axis=0)

    # ------------------------------------------------------------- the critics
    def q_values(self, critic_params: Params, obs: jax.Array, action: jax.Array) -> jax.Array:
        """The twin critics' action values: (2, N). DSAC-T's are the means of its return distributions."""
        return self.critic_net.apply(critic_params, obs, action)

    def critic_step(
        self, state: SacState, batch: Transition, next_action: jax.Array, entropy_term: jax.Array, key: jax.Array,
        hparams: HParams,
    ) -> tuple[SacState, dict[str, jax.Array]]:
        """Soft Q-learning on both critics: targets min_j Q'_j(s', a') - alpha log pi(a'|s') (`entropy_term`)."""
        del key  # the targets are expectations: no sample needed
        q_next = self.q_values(state.target_critic_params, batch.next_obs, next_action)
        y = losses.soft_q_targets(q_next, entropy_term, batch.reward, batch.terminated, hparams.reward_scale,
                                  hparams.gamma)
        q_fn = functools.partial(self.critic_net.apply, obs=batch.obs, action=batch.action)
        (loss, q), grads = jax.value_and_grad(losses.q_loss, has_aux=True)(state.critic_params, q_fn, y)
        params, opt_state = adam_step(state.critic_params, grads, state.critic_opt_state, hparams.lr_critic)
        metrics = {"critic_loss": loss, "q_mean": jnp.mean(q), "td_error": jnp.mean((y - q) ** 2),
                   "target_mean": jnp.mean(y)}
        return state.replace(critic_params=params, critic_opt_state=opt_state), metrics

    # ------------------------------------------------------------------ update
    def update(
        self, state: SacState, batch: Transition, key: jax.Array, hparams: HParams
    ) -> tuple[SacState, dict[str, jax.Array]]:
        """One update: `critic_step` every call; actor, alpha and Polyak targets every `policy_delay` calls.

        The actor step uses the critics of this update's start, as DACER's does.
        """
        k_target, k_critic, k_actor = jax.random.split(key, 3)
        alpha = jnp.exp(state.log_alpha)
        next_action, next_log_prob = self.sample(state.policy_params, batch.next_obs, k_target)
        new, critic_metrics = self.critic_step(state, batch, next_action, alpha * next_log_prob, k_critic, hparams)

        def actor_step(_):
            (loss, log_prob), grads = jax.value_and_grad(losses.sac_actor_loss, has_aux=True)(
                state.policy_params,
                lambda p: self.sample(p, batch.obs, k_actor),
                lambda a: self.q_values(state.critic_params, batch.obs, a),
                alpha,
            )
            params, opt_state = adam_step(state.policy_params, grads, state.policy_opt_state, hparams.lr_actor)
            alpha_grad = jax.grad(losses.sac_alpha_loss)(state.log_alpha, log_prob, self.target_entropy(hparams))
            log_alpha, alpha_opt_state = adam_step(state.log_alpha, alpha_grad, state.alpha_opt_state,
                                                   hparams.lr_alpha)
            targets = optax.incremental_update(new.critic_params, state.target_critic_params, hparams.tau)
            return params, opt_state, log_alpha, alpha_opt_state, targets, loss, -jnp.mean(log_prob)

        def actor_skip(_):
            return (state.policy_params, state.policy_opt_state, state.log_alpha, state.alpha_opt_state,
                    state.target_critic_params, state.actor_loss, state.entropy)

        (policy_params, policy_opt_state, log_alpha, alpha_opt_state, target_critic_params, actor_loss,
         entropy) = jax.lax.cond(state.step % self.config.policy_delay == 0, actor_step, actor_skip, None)
        new = new.replace(
            policy_params=policy_params, policy_opt_state=policy_opt_state, log_alpha=log_alpha,
            alpha_opt_state=alpha_opt_state, target_critic_params=target_critic_params, actor_loss=actor_loss,
            entropy=entropy, step=state.step + 1,
        )
        metrics = {
            **critic_metrics,
            "actor_loss": actor_loss,
            "alpha": jnp.exp(log_alpha),
            "entropy": entropy,
            "target_entropy": self.target_entropy(hparams),
        }
        return new, metrics


@struct.dataclass
class DsacState(SacState):
    """SacState plus DSAC-T's running sigma bound b per critic (2,)."""

    sigma_bound: jax.Array = None


@dataclasses.dataclass(frozen=True)
class DSACT(SAC):
    """DSAC-T: SAC's tanh-Gaussian actor and alpha with DACER's distributional twin critics (Eq. 11).

    The entropy term enters both targets as in SAC: y = r_s r + gamma (1 - d) (mu_min' - alpha log pi'),
    and the return sample y_s the same way (DACER_SPEC §9). The actor maximises min_j mu_j - alpha log pi.
    """

    @functools.cached_property
    def critic_net(self) -> TwinCritic:
        return TwinCritic(self.config.critic_hidden_sizes, self.config.critic_activation)

    def init(self, key: jax.Array) -> DsacState:
        base = super().init(key)
        return DsacState(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)},
                         sigma_bound=jnp.zeros(2, jnp.float32))

    def q_values(self, critic_params: Params, obs: jax.Array, action: jax.Array) -> jax.Array:
        return self.critic_net.apply(critic_params, obs, action)[0]

    def critic_step(self, state, batch, next_action, entropy_term, key, hparams):
        """Eq. 11 on both critics, DACER's loss, with the entropy term in its targets."""
        mu_next, sigma_next = self.critic_net.apply(state.target_critic_params, batch.next_obs, next_action)
        y, y_sample = losses.critic_targets(mu_next, sigma_next, batch.reward, batch.terminated, key,
                                            hparams.reward_scale, hparams.gamma, entropy_term)
        critic_fn = functools.partial(self.critic_net.apply, obs=batch.obs, action=batch.action)
        (loss, (sigma_bound, mu, sigma)), grads = jax.value_and_grad(losses.critic_loss, has_aux=True)(
            state.critic_params, critic_fn, y, y_sample, state.sigma_bound, state.step == 0
        )
        params, opt_state = adam_step(state.critic_params, grads, state.critic_opt_state, hparams.lr_critic)
        metrics = {"critic_loss": loss, "q_mean": jnp.mean(mu), "q_std": jnp.mean(sigma),
                   "td_error": jnp.mean((y - mu) ** 2), "target_mean": jnp.mean(y),
                   "sigma_bound": jnp.mean(sigma_bound)}
        return state.replace(critic_params=params, critic_opt_state=opt_state, sigma_bound=sigma_bound), metrics
