"""TRPO (Schulman et al., 2015) as a baseline: brax's on-policy pieces around a trust-region policy step.

No maintained JAX library has TRPO (brax 0.14.2's agents are APG, ARS, BC, ES,
PPO and SAC; skrl's and SB3-contrib's TRPO are PyTorch), so the step itself is
written here (`trust_region_step`). Everything around it is brax's, as for PPO:
the tanh-Gaussian policy and value networks (`make_ppo_networks`), the
rollouts (`acting.generate_unroll`), GAE (`ppo.losses.compute_gae`), the
running observation statistics and the evaluation episodes (the wrapper and
rollout of brax's `acting.Evaluator`). All seeds of a run train in one program,
vmapped over the seeds. `algorithm` gives `mjx_dacer.on_policy` a `Program`
that it drives one epoch at a time, so a TRPO run writes checkpoints (`Carry`:
the learner, the environments and the keys of every seed) and resumes exactly;
`run` writes the run directory (trpo.yaml, trpo_params_seed{s}.pkl in brax's
format, loadable as PPO's, checkpoints/).

One iteration is one policy update (DACER_SPEC §9: "iterations" on the
on-policy curves count updates), on fresh transitions:

    rollout   num_envs environments step transitions_per_iteration / num_envs times
              (2,000 transitions in all: the paper's), from where the last rollout stopped
    GAE       returns and advantages over each environment's sequence with the value
              network (brax: truncated steps are masked out); advantages normalised
    policy    one trust-region step on the surrogate L(θ) = mean_t r_t(θ) A_t,
              r_t = π_θ(a_t|s_t) / π_old(a_t|s_t), within mean KL(π_old || π_θ) <= max_kl
    value     value_epochs passes of Adam (config.lr_critic) on the mean squared error
              to the GAE returns, in minibatches of value_minibatch_transitions
    statistics the observation normaliser takes in the rollout's observations last, so
              π_old, its log-probabilities and the KL are those the data was collected with

Config keys read: env, physics, num_envs, total_iterations, eval_interval,
eval_episodes, gamma, reward_scale, lr_critic, hidden_sizes /
critic_hidden_sizes (policy / value widths), activation (both), seed,
checkpoint_interval (epochs between checkpoints; one is always written after
the last). The policy's step size is set by max_kl, so lr_actor is not read.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import optax
from brax import envs as brax_envs
from brax.envs.base import Env
from brax.training import acting, distribution
from brax.training.acme import running_statistics, specs
from brax.training.agents.ppo import losses as ppo_losses
from brax.training.agents.ppo import networks as ppo_networks
from jax.flatten_util import ravel_pytree

from mjx_dacer import on_policy, sinks
from mjx_dacer.config import Config, ConfigError
from mjx_dacer.ppo import network_factory, observation_preprocessor

# metrics.csv's columns after the evaluation's -> the epoch means this trainer reports.
_COLUMNS = {
    "kl": "training/kl",
    "surrogate_gain": "training/surrogate_gain",
    "step_fraction": "training/step_fraction",
    "value_loss": "training/value_loss",
}


@dataclasses.dataclass(frozen=True)
class TRPOSettings:
    """TRPO-only settings (the shared ones come from `Config`, see the module docstring).

    The paper gives only the on-policy batch (DACER_SPEC §9); the trust region's settings
    are the common ones of TRPO implementations (Spinning Up's and SB3-contrib's defaults).

    Attributes:
      transitions_per_iteration: env steps per policy update, over all environments (paper: 2,000).
      max_kl: delta, the trust region's radius in mean KL(π_old || π_θ) per state.
      cg_iterations: conjugate-gradient steps towards F^-1 g.
      cg_damping: lambda added to the Fisher matrix (F + lambda I) for a stable solve.
      backtrack_steps: line-search candidates: the full step times backtrack_ratio^k, k < backtrack_steps.
      backtrack_ratio: the line search's shrinking factor.
      value_epochs: passes of Adam over an iteration's transitions for the value network (SB3-contrib: 10).
      value_minibatch_transitions: transitions per value Adam step (the paper's batch of 2,000).
      gae_lambda: GAE's lambda (SB3-contrib's and brax PPO's 0.95).
      normalize_observations: running mean/std normalisation of observations (as for PPO here).
      observation_clip: the normalised observations are clipped to [-observation_clip, observation_clip]
        (SB3's VecNormalize default, 10). An entry that has been constant so far (a force that was 0 until
        now: Humanoid's and Ant's contact forces, InvertedDoublePendulum's cart limit) has std 1e-6, and
        its first nonzero value would reach the networks as up to 1e7 (unclipped, InvertedDoublePendulum's
        value loss reached 6e9 in such epochs).
    """

    transitions_per_iteration: int = 2_000
    max_kl: float = 0.01
    cg_iterations: int = 10
    cg_damping: float = 0.1
    backtrack_steps: int = 10
    backtrack_ratio: float = 0.8
    value_epochs: int = 10
    value_minibatch_transitions: int = 2_000
    gae_lambda: float = 0.95
    normalize_observations: bool = True
    observation_clip: float = 10.0


@flax.struct.dataclass
class TrainingState:
    """One seed's learner: the networks' parameters, the value network's Adam state, the normaliser."""

    policy: Any
    value: Any
    value_optimizer: optax.OptState
    normalizer: running_statistics.RunningStatisticsState


@flax.struct.dataclass
class Carry:
    """Everything one seed's training goes on from, between epochs (what a checkpoint holds, per seed).

    Attributes:
      learner: the networks, the value optimiser and the normaliser.
      env_state: the num_envs training environments, where the last rollout stopped.
      key: the PRNG key of the epochs to come.
      eval_key: the evaluations' key; evaluation point e uses fold_in(eval_key, e).
    """

    learner: TrainingState
    env_state: Any
    key: jax.Array
    eval_key: jax.Array


def check(config: Config, settings: TRPOSettings = TRPOSettings()) -> None:
    """Raises ConfigError (one line, naming the key and the fix) if this trainer cannot run `config` exactly."""
    if config.algo != "trpo":
        raise ConfigError(f"mjx_dacer.trpo runs algo trpo, the config has algo {config.algo!r}")
    on_policy.check_config(config, checkpoints=True)
    steps = settings.transitions_per_iteration
    if steps % config.num_envs:
        raise ConfigError(f"trpo: each of the num_envs ({config.num_envs}) environments steps an equal share of the "
                          f"{steps} transitions per iteration, so {steps} must be a multiple of num_envs")
    if steps % settings.value_minibatch_transitions:
        raise ConfigError(f"TRPOSettings: transitions_per_iteration ({steps}) must be a multiple of "
                          f"value_minibatch_transitions ({settings.value_minibatch_transitions})")


def gaussian_kl(old: jax.Array, new: jax.Array, policy_distribution: distribution.NormalTanhDistribution) -> jax.Array:
    """KL(π_old(.|s) || π_new(.|s)) for each state: (..., 2A) policy outputs -> (...).

    tanh is invertible and KL does not change under an invertible map of the
    variable, so the tanh-Gaussians' KL is that of their Gaussians, in closed form:
    sum_i log(σ_i / σ_old,i) + (σ_old,i^2 + (μ_old,i - μ_i)^2) / (2 σ_i^2) - 1/2.
    (brax's `kl_divergence` adds 1e-5 inside the log: a policy's KL to itself would not be 0.)
    """
    p, q = policy_distribution.create_dist(old), policy_distribution.create_dist(new)
    return jnp.sum(jnp.log(q.scale / p.scale) + (p.scale ** 2 + (p.loc - q.loc) ** 2) / (2 * q.scale ** 2) - 0.5,
                   axis=-1)


def conjugate_gradient(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, iterations: int) -> jax.Array:
    """x with A x ~ b after `iterations` conjugate-gradient steps from x = 0; A (symmetric positive definite) as
    `matvec`. Exact after dim(b) steps in exact arithmetic; a step after convergence (residual 0) changes nothing."""

    def step(carry, _):
        x, r, p, rr = carry
        ap = matvec(p)
        pap = p @ ap
        alpha = jnp.where(pap > 0, rr / jnp.where(pap > 0, pap, 1.0), 0.0)
        x, r = x + alpha * p, r - alpha * ap
        rr_next = r @ r
        p = r + jnp.where(rr > 0, rr_next / jnp.where(rr > 0, rr, 1.0), 0.0) * p
        return (x, r, p, rr_next), None

    (x, *_), _ = jax.lax.scan(step, (jnp.zeros_like(b), b, b, b @ b), None, length=iterations)
    return x


def trust_region_step(params, surrogate: Callable[[Any], jax.Array], kl: Callable[[Any], jax.Array],
                      settings: TRPOSettings) -> tuple[Any, dict[str, jax.Array]]:
    """One TRPO policy step from `params` = θ_old (Schulman et al., 2015, Sec. 6 and Appendix C).

    g = grad L(θ_old); F = the Hessian of the mean KL(θ_old, θ) at θ_old, the
    Fisher information, applied to vectors as a forward-over-reverse product;
    s ~ (F + λI)^-1 g by conjugate gradient. The full step β s, with
    β = sqrt(2 δ / s^T (F + λI) s), puts the KL's quadratic model at δ; the line
    search takes the first of β s · ratio^k (k = 0, 1, ...) whose KL is at most δ and
    whose surrogate exceeds L(θ_old), and no step if none does.

    Args:
      params: the policy's parameters (any pytree).
      surrogate: θ -> L(θ), a scalar to increase.
      kl: θ -> mean KL(π_old || π_θ), a scalar; 0 with zero gradient at `params`.
    Returns:
      (the new parameters, metrics: kl and surrogate_gain of the step taken, step_fraction: its
      ratio^k, 0 where no step was taken).
    """
    flat, unravel = ravel_pytree(params)
    flat_surrogate = lambda f: surrogate(unravel(f))  # noqa: E731
    flat_kl = lambda f: kl(unravel(f))  # noqa: E731
    surrogate_old, g = jax.value_and_grad(flat_surrogate)(flat)
    kl_gradient = jax.grad(flat_kl)

    def damped_fisher(v):
        return jax.jvp(kl_gradient, (flat,), (v,))[1] + settings.cg_damping * v

    s = conjugate_gradient(damped_fisher, g, settings.cg_iterations)
    beta = jnp.sqrt(2 * settings.max_kl / jnp.maximum(s @ damped_fisher(s), 1e-12))
    fractions = settings.backtrack_ratio ** jnp.arange(settings.backtrack_steps, dtype=flat.dtype)
    candidates = flat + (fractions * beta)[:, None] * s
    surrogates, kls = jax.vmap(lambda f: (flat_surrogate(f), flat_kl(f)))(candidates)
    accept = (kls <= settings.max_kl) & (surrogates > surrogate_old) & jnp.isfinite(surrogates)
    k, taken = jnp.argmax(accept), jnp.any(accept)
    metrics = {"kl": jnp.where(taken, kls[k], 0.0),
               "surrogate_gain": jnp.where(taken, surrogates[k] - surrogate_old, 0.0),
               "step_fraction": jnp.where(taken, fractions[k], 0.0)}
    return unravel(jnp.where(taken, candidates[k], flat)), metrics


def algorithm(config: Config, env: Env, settings: TRPOSettings = TRPOSettings()) -> on_policy.Algorithm:
    """TRPO as `on_policy.run` drives it: a `Program` of all the seeds, vmapped, its epoch compiled once."""
    num_envs, steps = config.num_envs, settings.transitions_per_iteration
    rollout_length = steps // num_envs
    train_env = brax_envs.training.wrap(env, episode_length=env.episode_length, action_repeat=1)
    # brax's evaluation episodes (its Evaluator's wrapper and rollout), here a pure function of (params, key)
    # so that it runs vmapped over the seeds: the Evaluator class holds one seed's key and compiles per instance.
    eval_env = brax_envs.training.EvalWrapper(
        brax_envs.training.wrap(env, episode_length=env.episode_length, action_repeat=1))
    networks = network_factory(config, observation_preprocessor(settings))(env.observation_size, env.action_size)
    make_policy = ppo_networks.make_inference_fn(networks)
    policy_distribution = networks.parametric_action_distribution
    value_optimizer = optax.adam(config.lr_critic)

    def value_loss(value_params, normalizer, observations, returns):
        return jnp.mean((networks.value_network.apply(normalizer, value_params, observations) - returns) ** 2)

    def fit_value(state: TrainingState, observations, returns, key):
        """value_epochs passes of Adam over (observations (steps, obs), returns (steps,)) in shuffled minibatches."""
        minibatches = steps // settings.value_minibatch_transitions

        def adam_step(carry, batch):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(value_loss)(params, state.normalizer, *batch)
            updates, opt_state = value_optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        def epoch(carry, epoch_key):
            order = jax.random.permutation(epoch_key, steps)
            batches = jax.tree.map(lambda x: x[order].reshape(minibatches, -1, *x.shape[1:]), (observations, returns))
            return jax.lax.scan(adam_step, carry, batches)

        (params, opt_state), losses = jax.lax.scan(epoch, (state.value, state.value_optimizer),
                                                   jax.random.split(key, settings.value_epochs))
        return params, opt_state, losses[-1].mean()  # the last epoch's loss

    def iteration(carry, _):
        state, env_state, key = carry
        key, rollout_key, value_key = jax.random.split(key, 3)
        env_state, data = acting.generate_unroll(train_env, env_state, make_policy((state.normalizer, state.policy)),
                                                 rollout_key, rollout_length, extra_fields=("truncation",))
        # data: leaves (rollout_length, num_envs, ...), each environment's steps in order.
        value = functools.partial(networks.value_network.apply, state.normalizer, state.value)
        truncation = data.extras["state_extras"]["truncation"]
        returns, advantages = ppo_losses.compute_gae(
            truncation=truncation, termination=(1 - data.discount) * (1 - truncation),
            rewards=data.reward * config.reward_scale, values=value(data.observation),
            bootstrap_value=value(data.next_observation[-1]), lambda_=settings.gae_lambda, discount=config.gamma)
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        policy_outputs = functools.partial(networks.policy_network.apply, state.normalizer)
        raw_actions, log_prob_old = data.extras["policy_extras"]["raw_action"], data.extras["policy_extras"]["log_prob"]
        old = policy_outputs(state.policy, data.observation)

        def surrogate(policy):  # L(θ) = mean r_t(θ) A_t
            log_prob = policy_distribution.log_prob(policy_outputs(policy, data.observation), raw_actions)
            return jnp.mean(jnp.exp(log_prob - log_prob_old) * advantages)

        def kl(policy):
            return jnp.mean(gaussian_kl(old, policy_outputs(policy, data.observation), policy_distribution))

        policy, metrics = trust_region_step(state.policy, surrogate, kl, settings)
        flat = lambda x: x.reshape(steps, *x.shape[2:])  # noqa: E731
        value_params, value_opt_state, metrics["value_loss"] = fit_value(
            state, flat(data.observation), flat(returns), value_key)
        normalizer = state.normalizer
        if settings.normalize_observations:
            normalizer = running_statistics.update(normalizer, data.observation)
        state = TrainingState(policy=policy, value=value_params, value_optimizer=value_opt_state,
                              normalizer=normalizer)
        return (state, env_state, key), metrics

    def epoch(carry: Carry) -> tuple[Carry, dict[str, jax.Array]]:
        """eval_interval iterations of one seed; the metrics' means over them."""
        key, epoch_key = jax.random.split(carry.key)
        (learner, env_state, _), metrics = jax.lax.scan(iteration, (carry.learner, carry.env_state, epoch_key), None,
                                                        length=config.eval_interval)
        return (carry.replace(learner=learner, env_state=env_state, key=key),
                {f"training/{name}": jnp.mean(values) for name, values in metrics.items()})

    def init(seed: jax.Array) -> Carry:
        # Seed s's keys depend on s alone, so a seed trains the same alone or beside others.
        init_key, eval_key, key = jax.random.split(jax.random.PRNGKey(seed), 3)
        policy_key, value_key, env_key = jax.random.split(init_key, 3)
        value = networks.value_network.init(value_key)
        observation = specs.Array((env.observation_size,), jnp.dtype("float32"))
        learner = TrainingState(policy=networks.policy_network.init(policy_key), value=value,
                                value_optimizer=value_optimizer.init(value),
                                normalizer=running_statistics.init_state(observation))
        return Carry(learner=learner, env_state=train_env.reset(jax.random.split(env_key, num_envs)), key=key,
                     eval_key=eval_key)

    def evaluate(carry: Carry, e: jax.Array):
        """Evaluation point e: eval_episodes deterministic episodes of at most episode_length steps, their
        returns and lengths (eval_episodes,)."""
        reset_key, unroll_key = jax.random.split(jax.random.fold_in(carry.eval_key, e))
        first = eval_env.reset(jax.random.split(reset_key, config.eval_episodes))
        policy = make_policy((carry.learner.normalizer, carry.learner.policy), deterministic=True)
        last, _ = acting.generate_unroll(eval_env, first, policy, unroll_key, env.episode_length)
        return last.info["eval_metrics"].episode_metrics["reward"], last.info["eval_metrics"].episode_steps

    # Every seed in one program: the leading axis of every leaf is the seed.
    epochs = jax.jit(jax.vmap(epoch), donate_argnums=0)
    inits, evaluations = jax.jit(jax.vmap(init)), jax.jit(jax.vmap(evaluate, in_axes=(0, None)))

    def evaluate_seeds(carry: Carry, e: int) -> list[dict[str, float]]:
        returns, lengths = jax.device_get(evaluations(carry, e))
        return [{"eval/episode_reward": r.mean(), "eval/episode_reward_std": r.std(),
                 "eval/avg_episode_length": n.mean()} for r, n in zip(returns, lengths)]

    def params(carry: Carry) -> list:
        learner = jax.device_get(carry.learner)
        saved = (learner.normalizer, learner.policy, learner.value)
        return [jax.tree.map(lambda x: x[i], saved) for i in range(len(carry.key))]

    program = on_policy.Program(init=lambda seeds: inits(jnp.asarray(seeds)), epoch=epochs, evaluate=evaluate_seeds,
                                params=params)
    return on_policy.Algorithm(
        name="trpo", title="TRPO", columns=_COLUMNS, transitions_per_iteration=steps,
        settings={"settings": dataclasses.asdict(settings), "rollout_length": rollout_length}, program=program)


def run(config: Config, out: str | pathlib.Path, *, seeds: int | Sequence[int] = 1,
        settings: TRPOSettings = TRPOSettings(), progress_fn: sinks.ProgressFn = print,
        resume: bool = False, track: str | None = None) -> list[dict]:
    """Train TRPO, all seeds in one program, and write the run directory `out` (checkpointed, resumable).

    Args:
      config: a Config with algo "trpo" (`mjx-dacer train --algo trpo` layers Table 2's networks over the preset);
        with `resume`, the run's config or it with a larger total_iterations.
      out: the run directory; absent or empty, or with `resume` an earlier TRPO run.
      seeds: how many seeds (0..N-1), or which; seed s trains with seed config.seed + s (with `resume`: the run's).
      settings: the TRPO-only settings (a resumed run must have been started with the same).
      progress_fn: receives every progress line.
      resume: go on from the run's newest usable checkpoint, as if it had not stopped (`on_policy.run`).
      track: None, or a W&B project: one W&B run per seed (`on_policy.run`).
    Returns:
      metrics.csv's rows: one dict per evaluation point and seed.
    Raises:
      ConfigError: a config this trainer cannot run exactly, bad seeds, `out` holds files, or a resume whose
        config or settings differ from the run's (all before anything is written); CheckpointError: nothing to
        resume from; RunStopped: SIGINT / SIGTERM stopped the run after the epoch in progress (checkpointed).
    """
    check(config, settings)
    return on_policy.run(config, out, functools.partial(algorithm, settings=settings), seeds=seeds,
                         progress_fn=progress_fn, resume=resume, track=track)


__all__ = ["Carry", "TRPOSettings", "TrainingState", "algorithm", "check", "conjugate_gradient", "gaussian_kl",
           "observation_preprocessor", "run", "trust_region_step"]
