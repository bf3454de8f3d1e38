"""The DACER agent: state, action sampling and the pure update step (DACER_SPEC §2-4).

`DACER` holds only static structure (sizes, networks, schedule); everything
that changes lives in `DacerState`, and every method is a pure function of
its arguments, so `update` can be jit-ed, scanned and vmapped over seeds and
over `HParams` batches.

Shapes: N = batch size, S = observation size, A = action size, M = entropy samples.
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

from mjx_dacer import diffusion
from mjx_dacer.buffer import Transition
from mjx_dacer.config import Config, HParams
from mjx_dacer.gmm import gmm_entropy
from mjx_dacer.networks import NoisePredictor, TwinCritic

Params = Any

# DSAC-T constants (DACER_SPEC §3).
CRITIC_EPS = 0.1  # eps in the variance-based gradient scaling
SIGMA_BOUND_RATE = 0.005  # Polyak rate of the running sigma bound b
SAMPLE_CLIP = 3.0  # return samples use clip(N(0,1), -3, 3); targets clip to +-3b


@struct.dataclass
class DacerState:
    """Everything DACER learns or counts; leaves may carry leading vmap axes."""

    policy_params: Params
    critic_params: Params  # twin critics, leaves stacked on a leading axis of 2
    target_critic_params: Params
    policy_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    log_alpha: jax.Array  # scalar; alpha = exp(log_alpha) scales the Eq. 16 noise
    sigma_bound: jax.Array  # (2,): b per critic, running mean of batch-mean sigma
    entropy: jax.Array  # scalar: the latest H_hat (Eq. 15), 0 before the first estimate
    actor_loss: jax.Array  # scalar: the latest actor loss (the actor updates every policy_delay)
    step: jax.Array  # int32 scalar: number of updates done


# Adam without a step size: the (possibly vmapped) learning rates from HParams
# are applied by `_adam_step`, so one compiled program serves a whole grid.
_adam = optax.scale_by_adam()


def _adam_step(params: Params, grads: Params, opt_state: optax.OptState, lr: jax.Array):
    updates, opt_state = _adam.update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    return params, opt_state


def distributional_critic_loss(
    mu: jax.Array, sigma: jax.Array, y: jax.Array, y_sample: jax.Array, b: jax.Array
) -> jax.Array:
    """DSAC-T loss of one critic (Eq. 11 with DACER_SPEC §3's refinements).

    y_hat = sg(mu) + clip(y_s - sg(mu), -3b, 3b);
    L = -(b^2 + eps) * mean[ mu * sg(y - mu) / (sg(sigma)^2 + eps)
                            + sigma * ((sg(mu) - y_hat)^2 - sg(sigma)^2) / (sg(sigma)^3 + eps) ].
    The first term moves mu towards the expected target y, the second moves
    sigma towards the spread of the clipped return sample; the (b^2 + eps)
    factor rescales gradients by the typical variance.

    Args:
      mu, sigma: (N,) predicted mean and std.
      y: (N,) target mean; y_sample: (N,) target return sample; b: scalar bound.
    Returns: scalar loss.
    """
    sg = jax.lax.stop_gradient
    mu_d, sigma_d = sg(mu), sg(sigma)
    y_hat = mu_d + jnp.clip(y_sample - mu_d, -SAMPLE_CLIP * b, SAMPLE_CLIP * b)
    mean_term = mu * sg(y - mu) / (sigma_d**2 + CRITIC_EPS)
    std_term = sigma * ((mu_d - y_hat) ** 2 - sigma_d**2) / (sigma_d**3 + CRITIC_EPS)
    return -(sg(b) ** 2 + CRITIC_EPS) * jnp.mean(mean_term + std_term)


@dataclasses.dataclass(frozen=True)
class DACER:
    """Static structure of the agent; build with `DACER.from_config`."""

    obs_size: int
    action_size: int
    hidden_sizes: tuple[int, ...] = (256, 256, 256)
    critic_hidden_sizes: tuple[int, ...] = (256, 256, 256)
    activation: str = "mish"
    critic_activation: str = "mish"
    diffusion_steps: int = 20
    policy_delay: int = 2
    alpha_update_interval: int = 10_000
    entropy_samples: int = 200
    gmm_components: int = 3
    initial_alpha: float = 3.0

    @classmethod
    def from_config(cls, config: Config, obs_size: int, action_size: int) -> "DACER":
        fields = {f.name for f in dataclasses.fields(cls)} - {"obs_size", "action_size"}
        return cls(obs_size=obs_size, action_size=action_size, **{k: getattr(config, k) for k in fields})

    # ----------------------------------------------------------------- networks
    @functools.cached_property
    def policy_net(self) -> NoisePredictor:
        return NoisePredictor(self.action_size, self.hidden_sizes, self.activation)

    @functools.cached_property
    def critic_net(self) -> TwinCritic:
        return TwinCritic(self.critic_hidden_sizes, self.critic_activation)

    @functools.cached_property
    def schedule(self) -> diffusion.DiffusionSchedule:
        return diffusion.make_schedule(self.diffusion_steps)

    def init(self, key: jax.Array) -> DacerState:
        """Fresh networks, targets equal to the critics, log_alpha = log(initial_alpha)."""
        k_policy, k_critic = jax.random.split(key)
        obs = jnp.zeros((1, self.obs_size))
        act = jnp.zeros((1, self.action_size))
        policy_params = self.policy_net.init(k_policy, obs, act, jnp.zeros((1,), jnp.int32))
        critic_params = self.critic_net.init(k_critic, obs, act)
        log_alpha = jnp.float32(math.log(self.initial_alpha))
        return DacerState(
            policy_params=policy_params,
            critic_params=critic_params,
            target_critic_params=critic_params,
            policy_opt_state=_adam.init(policy_params),
            critic_opt_state=_adam.init(critic_params),
            alpha_opt_state=_adam.init(log_alpha),
            log_alpha=log_alpha,
            sigma_bound=jnp.zeros(2, jnp.float32),
            entropy=jnp.float32(0.0),
            actor_loss=jnp.float32(0.0),
            step=jnp.int32(0),
        )

    def target_entropy(self, hparams: HParams) -> jax.Array:
        """H_target = -target_entropy_factor * dim(A) (DACER_SPEC §2: -0.9 dim(A))."""
        return -hparams.target_entropy_factor * self.action_size

    # ------------------------------------------------------------------ acting
    def deterministic_action(self, policy_params: Params, obs: jax.Array, key: jax.Array) -> jax.Array:
        """a0 of the reverse chain without exploration noise (evaluation). obs (N, S) -> (N, A)."""
        noise_fn = functools.partial(self.policy_net.apply, policy_params)
        return diffusion.reverse_chain(noise_fn, self.schedule, obs, key, self.action_size)

    def behaviour_action(
        self,
        policy_params: Params,
        obs: jax.Array,
        key: jax.Array,
        log_alpha: jax.Array,
        noise_scale: jax.Array,
    ) -> jax.Array:
        """Eq. 16: clip(a0 + lambda * alpha * N(0, I), -1, 1). obs (N, S) -> (N, A)."""
        k_chain, k_noise = jax.random.split(key)
        a0 = self.deterministic_action(policy_params, obs, k_chain)
        return diffusion.add_exploration_noise(a0, k_noise, noise_scale, jnp.exp(log_alpha))

    def estimate_entropy(
        self,
        policy_params: Params,
        obs: jax.Array,
        key: jax.Array,
        log_alpha: jax.Array,
        noise_scale: jax.Array,
    ) -> jax.Array:
        """H_hat (Eq. 12-15): mean over states of the GMM entropy of M behaviour actions.

        obs (N, S) -> scalar. Draws M = entropy_samples actions per state,
        fits a K-component full-covariance GMM per state on the device.
        """
        n = obs.shape[0]
        repeated = jnp.repeat(obs, self.entropy_samples, axis=0)  # (N*M, S)
        actions = self.behaviour_action(policy_params, repeated, key, log_alpha, noise_scale)
        actions = actions.reshape(n, self.entropy_samples, self.action_size)
        return jnp.mean(gmm_entropy(actions, num_components=self.gmm_components))

    # ------------------------------------------------------------------ update
    def update(
        self, state: DacerState, batch: Transition, key: jax.Array, hparams: HParams
    ) -> tuple[DacerState, dict[str, jax.Array]]:
        """One gradient update (DACER_SPEC §2-4).

        * Critics (every call): DSAC-T loss against targets from the target
          critics at (s', a'), a' a behaviour action of the current policy.
        * Actor and Polyak targets (every `policy_delay` calls): maximise
          min(mu1, mu2) at behaviour actions sampled through the chain (Eq. 10).
        * Every `alpha_update_interval` calls, including the first: H_hat on the
          batch states and an Adam step on log_alpha with gradient H_hat - H_target.

        Args:
          batch: Transition with leading axis N. key: PRNG key. hparams: scalars.
        Returns: (new state, metrics dict of scalars).
        """
        k_target, k_sample, k_actor, k_entropy = jax.random.split(key, 4)
        sg = jax.lax.stop_gradient
        noise_scale = hparams.noise_scale

        # Targets y, y_s (spec §3): no entropy term, no target policy.
        next_action = self.behaviour_action(state.policy_params, batch.next_obs, k_target, state.log_alpha, noise_scale)
        mu_next, sigma_next = self.critic_net.apply(state.target_critic_params, batch.next_obs, next_action)
        lower = jnp.argmin(mu_next, axis=0)  # critic with the smaller mean, per sample
        mu_min = jnp.take_along_axis(mu_next, lower[None], axis=0)[0]
        sigma_min = jnp.take_along_axis(sigma_next, lower[None], axis=0)[0]
        z_next = mu_min + sigma_min * jnp.clip(jax.random.normal(k_sample, mu_min.shape), -SAMPLE_CLIP, SAMPLE_CLIP)
        discount = hparams.gamma * (1.0 - batch.terminated)  # truncation still bootstraps
        scaled_reward = hparams.reward_scale * batch.reward
        y = sg(scaled_reward + discount * mu_min)
        y_sample = sg(scaled_reward + discount * z_next)

        def critic_loss_fn(critic_params):
            mu, sigma = self.critic_net.apply(critic_params, batch.obs, batch.action)  # (2, N)
            # b: initialised to the first batch-mean sigma, then Polyak-averaged.
            batch_sigma = jnp.mean(sg(sigma), axis=-1)
            b = jnp.where(
                state.step == 0,
                batch_sigma,
                (1.0 - SIGMA_BOUND_RATE) * state.sigma_bound + SIGMA_BOUND_RATE * batch_sigma,
            )
            losses = jax.vmap(distributional_critic_loss, in_axes=(0, 0, None, None, 0))(mu, sigma, y, y_sample, b)
            return jnp.sum(losses), (b, mu, sigma)

        (critic_loss, (sigma_bound, mu, sigma)), critic_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
            state.critic_params
        )
        critic_params, critic_opt_state = _adam_step(
            state.critic_params, critic_grads, state.critic_opt_state, hparams.lr_critic
        )

        # Delayed actor and target update (spec §4), with the critics of this step's start.
        def actor_loss_fn(policy_params):
            action = self.behaviour_action(policy_params, batch.obs, k_actor, sg(state.log_alpha), noise_scale)
            q, _ = self.critic_net.apply(state.critic_params, batch.obs, action)
            return -jnp.mean(jnp.min(q, axis=0))

        def actor_step(_):
            loss, grads = jax.value_and_grad(actor_loss_fn)(state.policy_params)
            params, opt_state = _adam_step(state.policy_params, grads, state.policy_opt_state, hparams.lr_actor)
            targets = optax.incremental_update(critic_params, state.target_critic_params, hparams.tau)
            return params, opt_state, targets, loss

        def actor_skip(_):
            return state.policy_params, state.policy_opt_state, state.target_critic_params, state.actor_loss

        policy_params, policy_opt_state, target_critic_params, actor_loss = jax.lax.cond(
            state.step % self.policy_delay == 0, actor_step, actor_skip, None
        )

        # Entropy regulator (spec §2): loss = -log_alpha * (H_target - H_hat).
        def alpha_step(_):
            entropy = self.estimate_entropy(state.policy_params, batch.obs, k_entropy, state.log_alpha, noise_scale)
            grad = entropy - self.target_entropy(hparams)
            log_alpha, opt_state = _adam_step(state.log_alpha, grad, state.alpha_opt_state, hparams.lr_alpha)
            return log_alpha, opt_state, entropy

        def alpha_skip(_):
            return state.log_alpha, state.alpha_opt_state, state.entropy

        log_alpha, alpha_opt_state, entropy = jax.lax.cond(
            state.step % self.alpha_update_interval == 0, alpha_step, alpha_skip, None
        )

        new_state = DacerState(
            policy_params=policy_params,
            critic_params=critic_params,
            target_critic_params=target_critic_params,
            policy_opt_state=policy_opt_state,
            critic_opt_state=critic_opt_state,
            alpha_opt_state=alpha_opt_state,
            log_alpha=log_alpha,
            sigma_bound=sigma_bound,
            entropy=entropy,
            actor_loss=actor_loss,
            step=state.step + 1,
        )
        metrics = {
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "q_mean": jnp.mean(mu),
            "q_std": jnp.mean(sigma),
            "td_error": jnp.mean((y - mu) ** 2),
            "target_mean": jnp.mean(y),
            "sigma_bound": jnp.mean(sigma_bound),
            "alpha": jnp.exp(log_alpha),
            "entropy": entropy,
            "target_entropy": self.target_entropy(hparams),
        }
        return new_state, metrics
