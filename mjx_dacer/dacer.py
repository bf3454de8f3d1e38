"""The DACER agent: state, action sampling and the update step (DACER_SPEC §2-4).

`DACER` holds only static structure (the config's static fields, sizes,
networks, schedule); everything that changes lives in `DacerState`. It
implements the `mjx_dacer.agent.Agent` interface the training program
drives; its losses are the pure functions of `mjx_dacer.losses`, composed
by `update`. Every method is a pure function of its arguments, so `update`
can be jit-ed, scanned and vmapped over seeds and over `HParams` batches.

Shapes: N = batch size, S = observation size, A = action size, M = entropy samples.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from mjx_dacer import diffusion, losses
from mjx_dacer.buffer import Transition
from mjx_dacer.config import Config, HParams
from mjx_dacer.gmm import gmm_entropy
from mjx_dacer.networks import NoisePredictor, TwinCritic
from mjx_dacer.optim import adam, adam_step

Params = Any


@struct.dataclass
class DacerState:
    """Everything DACER learns or counts; leaves may carry leading vmap axes (except `step`)."""

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


@dataclasses.dataclass(frozen=True)
class DACER:
    """Static structure of the agent: the config's static fields and the task's sizes.

    The traced fields of `config` (learning rates, noise scale, ...) are never
    read here: they arrive as `HParams`, which may be vmapped.
    """

    config: Config
    obs_size: int
    action_size: int

    # ----------------------------------------------------------------- networks
    @functools.cached_property
    def policy_net(self) -> NoisePredictor:
        return NoisePredictor(self.action_size, self.config.hidden_sizes, self.config.activation)

    @functools.cached_property
    def critic_net(self) -> TwinCritic:
        return TwinCritic(self.config.critic_hidden_sizes, self.config.critic_activation)

    @functools.cached_property
    def schedule(self) -> diffusion.DiffusionSchedule:
        return diffusion.make_schedule(self.config.diffusion_steps)

    def init(self, key: jax.Array) -> DacerState:
        """Fresh networks, targets equal to the critics, log_alpha = log(initial_alpha)."""
        k_policy, k_critic = jax.random.split(key)
        obs = jnp.zeros((1, self.obs_size))
        act = jnp.zeros((1, self.action_size))
        policy_params = self.policy_net.init(k_policy, obs, act, jnp.zeros((1,), jnp.int32))
        critic_params = self.critic_net.init(k_critic, obs, act)
        log_alpha = jnp.float32(math.log(self.config.initial_alpha))
        return DacerState(
            policy_params=policy_params,
            critic_params=critic_params,
            target_critic_params=critic_params,
            policy_opt_state=adam.init(policy_params),
            critic_opt_state=adam.init(critic_params),
            alpha_opt_state=adam.init(log_alpha),
            log_alpha=log_alpha,
            sigma_bound=jnp.zeros(2, jnp.float32),
            entropy=jnp.float32(0.0),
            actor_loss=jnp.float32(0.0),
            step=jnp.int32(0),
        )

    def target_entropy(self, hparams: HParams) -> jax.Array:
        """H_target = -target_entropy_factor * dim(A) (DACER_SPEC §2: -0.9 dim(A))."""
        return -hparams.target_entropy_factor * self.action_size

    def noise_scale(self, step: jax.Array, hparams: HParams) -> jax.Array:
        """lambda of Eq. 16 at update ``step``: noise_scale, falling linearly by the fraction noise_decay.

        lambda_t = noise_scale * (1 - noise_decay * min(t / (total_iterations * updates_per_iteration), 1)).
        noise_decay 0 (the default) is the paper's constant lambda; the Sec. 5.3 ablation's noise factor
        lambda * alpha falling from 0.27 to 0.1 is noise_decay = 1 - 0.1 / 0.27 with alpha held (lr_alpha 0).
        """
        total = self.config.total_iterations * self.config.updates_per_iteration
        progress = jnp.minimum(step.astype(jnp.float32) / total, 1.0)
        return hparams.noise_scale * (1.0 - hparams.noise_decay * progress)

    # ------------------------------------------------- acting, from parameters
    def chain_actions(
        self, policy_params: Params, obs_parts: Sequence[jax.Array], keys: Sequence[jax.Array]
    ) -> list[jax.Array]:
        """a0 of the reverse chain (Eq. 7-9), without exploration noise, for each part: obs (N_i, S) -> (N_i, A).

        Part i's draws come from keys[i] alone (`diffusion.chain_noise`), so its actions are those of a chain
        of its own; the parts' states are stacked into one chain of sum N_i rows, T steps for all of them.
        The states' share of the noise network's first layer is computed once for all T steps."""
        net = self.policy_net
        draws = [diffusion.chain_noise(k, o.shape[:-1] + (self.action_size,), self.schedule.num_steps)
                 for o, k in zip(obs_parts, keys)]
        x_T = jnp.concatenate([x for x, _ in draws])
        step_noise = jnp.concatenate([z for _, z in draws], axis=1)
        obs_share = net.apply(policy_params, jnp.concatenate(obs_parts), method=NoisePredictor.condition)
        noise_fn = functools.partial(net.apply, policy_params, method=NoisePredictor.conditioned)
        a0 = diffusion.denoise(noise_fn, self.schedule, obs_share, x_T, step_noise, self.config.chain_unroll)
        return jnp.split(a0, np.cumsum([o.shape[0] for o in obs_parts])[:-1])

    def deterministic_action(self, policy_params: Params, obs: jax.Array, key: jax.Array) -> jax.Array:
        """a0 of the reverse chain (Eq. 7-9) without exploration noise. obs (N, S) -> (N, A)."""
        return self.chain_actions(policy_params, (obs,), (key,))[0]

    def noisy_actions(
        self,
        policy_params: Params,
        obs_parts: Sequence[jax.Array],
        keys: Sequence[jax.Array],
        log_alpha: jax.Array,
        noise_scale: jax.Array,
    ) -> list[jax.Array]:
        """`noisy_action` for each part, obs (N_i, S) with keys[i], from one chain (`chain_actions`)."""
        chain_keys, noise_keys = zip(*(jax.random.split(k) for k in keys))
        a0 = self.chain_actions(policy_params, obs_parts, chain_keys)
        alpha = jnp.exp(log_alpha)
        return [diffusion.add_exploration_noise(a, k, noise_scale, alpha) for a, k in zip(a0, noise_keys)]

    def noisy_action(
        self,
        policy_params: Params,
        obs: jax.Array,
        key: jax.Array,
        log_alpha: jax.Array,
        noise_scale: jax.Array,
    ) -> jax.Array:
        """Eq. 16: clip(a0 + lambda * alpha * N(0, I), -1, 1). obs (N, S) -> (N, A)."""
        return self.noisy_actions(policy_params, (obs,), (key,), log_alpha, noise_scale)[0]

    # ------------------------------------------ the Agent interface: acting
    def behaviour_action(self, state: DacerState, obs: jax.Array, key: jax.Array, hparams: HParams) -> jax.Array:
        """Training actions, Eq. 16 with the state's alpha. obs (N, S) -> (N, A)."""
        return self.noisy_action(state.policy_params, obs, key, state.log_alpha, self.noise_scale(state.step, hparams))

    def eval_action(self, state: DacerState, obs: jax.Array, key: jax.Array) -> jax.Array:
        """Evaluation actions: the reverse chain's a0. obs (N, S) -> (N, A)."""
        return self.deterministic_action(state.policy_params, obs, key)

    def policy_export(self, state: DacerState, hparams: HParams) -> dict[str, Any]:
        """The noise network, log_alpha and lambda of each run: what policy.msgpack holds (Eq. 16 needs all three).

        lambda is the one in force at the state's update count (it differs from noise_scale under noise_decay)."""
        return {"policy_params": state.policy_params, "log_alpha": state.log_alpha,
                "noise_scale": self.noise_scale(state.step, hparams)}

    def exported_action(self, export: dict[str, Any], obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """a0 of the chain, plus Eq. 16's noise unless deterministic, from a run's `policy_export`."""
        if deterministic:
            return self.deterministic_action(export["policy_params"], obs, key)
        return self.noisy_action(export["policy_params"], obs, key, export["log_alpha"], export["noise_scale"])

    def action_value(self, state: DacerState, obs: jax.Array, action: jax.Array) -> jax.Array:
        """min over the twin critics of the return distributions' means mu (Eq. 10's Q). (N, S), (N, A) -> (N,)."""
        return jnp.min(self.critic_net.apply(state.critic_params, obs, action)[0], axis=0)

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
        n, m = obs.shape[0], self.config.entropy_samples
        repeated = jnp.repeat(obs, m, axis=0)  # (N*M, S)
        actions = self.noisy_action(policy_params, repeated, key, log_alpha, noise_scale)
        actions = actions.reshape(n, m, self.action_size)
        return jnp.mean(gmm_entropy(actions, num_components=self.config.gmm_components))

    # ------------------------------------------ the Agent interface: update
    def update(
        self, state: DacerState, batch: Transition, key: jax.Array, hparams: HParams
    ) -> tuple[DacerState, dict[str, jax.Array]]:
        """One gradient update (DACER_SPEC §2-4), composed of the losses in `mjx_dacer.losses`.

        * Critics (every call): Eq. 11 against targets from the target critics
          at (s', a'), a' a behaviour action of the current policy.
        * Actor and Polyak targets (every `policy_delay` calls): Eq. 10 with
          the critics of this update's start.
        * Every `alpha_update_interval` calls, including the first: H_hat
          (Eq. 15) on the batch states and an Adam step on log_alpha.

        Args:
          batch: Transition with leading axis N. key: PRNG key. hparams: scalars.
        Returns: (new state, metrics dict of scalars).
        """
        cfg = self.config
        k_target, k_sample, k_actor, k_entropy = jax.random.split(key, 4)
        noise_scale = self.noise_scale(state.step, hparams)
        train_actor = state.step % cfg.policy_delay == 0

        def target_actions():
            """a' of the critics' targets: behaviour actions of the current policy at s' (N, A)."""
            return self.noisy_action(state.policy_params, batch.next_obs, k_target, state.log_alpha, noise_scale)

        # Delayed actor (spec §4): Eq. 10 with the critics of this update's start. Under fuse_chains
        # its chain runs over s' as well and gives a' (aux, without gradient): one chain of 2N states
        # instead of two of N, which saves T sequential steps where small kernels run one by one (a
        # GPU) and costs the actor's backward pass twice the rows where the arithmetic is the cost (a CPU).
        def behaviour_actions(params):
            if not cfg.fuse_chains:
                return self.noisy_action(params, batch.obs, k_actor, state.log_alpha, noise_scale), None
            return tuple(self.noisy_actions(
                params, (batch.obs, batch.next_obs), (k_actor, k_target), state.log_alpha, noise_scale))

        def actor_step(_):
            (loss, next_action), grads = jax.value_and_grad(losses.actor_loss, has_aux=True)(
                state.policy_params,
                behaviour_actions,
                lambda a: self.critic_net.apply(state.critic_params, batch.obs, a)[0],
            )
            params, opt_state = adam_step(state.policy_params, grads, state.policy_opt_state, hparams.lr_actor)
            return params, opt_state, loss, next_action

        def actor_skip(_):
            next_action = target_actions() if cfg.fuse_chains else None
            return state.policy_params, state.policy_opt_state, state.actor_loss, next_action

        policy_params, policy_opt_state, actor_loss, next_action = jax.lax.cond(
            train_actor, actor_step, actor_skip, None
        )
        if not cfg.fuse_chains:
            next_action = target_actions()

        # Critics (Eq. 11), then the Polyak step of their targets where the actor trained.
        mu_next, sigma_next = self.critic_net.apply(state.target_critic_params, batch.next_obs, next_action)
        y, y_sample = losses.critic_targets(
            mu_next, sigma_next, batch.reward, batch.terminated, k_sample, hparams.reward_scale, hparams.gamma
        )
        critic_fn = functools.partial(self.critic_net.apply, obs=batch.obs, action=batch.action)
        (critic_loss, (sigma_bound, mu, sigma)), critic_grads = jax.value_and_grad(losses.critic_loss, has_aux=True)(
            state.critic_params, critic_fn, y, y_sample, state.sigma_bound, state.step == 0
        )
        critic_params, critic_opt_state = adam_step(
            state.critic_params, critic_grads, state.critic_opt_state, hparams.lr_critic
        )
        # A select rather than a second cond: the average is a few elementwise passes over the
        # critics, and a cond's predicate goes to the host on a GPU.
        target_critic_params = jax.tree.map(
            lambda new, old: jnp.where(train_actor, new, old),
            optax.incremental_update(critic_params, state.target_critic_params, hparams.tau),
            state.target_critic_params,
        )

        # Entropy regulator (spec §2).
        def alpha_step(_):
            entropy = self.estimate_entropy(state.policy_params, batch.obs, k_entropy, state.log_alpha, noise_scale)
            grad = jax.grad(losses.alpha_loss)(state.log_alpha, entropy, self.target_entropy(hparams))
            log_alpha, opt_state = adam_step(state.log_alpha, grad, state.alpha_opt_state, hparams.lr_alpha)
            return log_alpha, opt_state, entropy

        def alpha_skip(_):
            return state.log_alpha, state.alpha_opt_state, state.entropy

        log_alpha, alpha_opt_state, entropy = jax.lax.cond(
            state.step % cfg.alpha_update_interval == 0, alpha_step, alpha_skip, None
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
