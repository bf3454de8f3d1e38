"""PPO as a baseline: brax's maintained trainer (`brax.training.agents.ppo.train.train`) on our MJX tasks.

PPO is on-policy, so it does not fit the shared compiled program (replay
buffer, warm-up, vmapped seeds); `run` calls brax's trainer once per seed on
`envs.make(config.env, physics=config.physics)` and writes an ordinary run
directory (`mjx_dacer.on_policy`: config.yaml, ppo.yaml with `PPOSettings` and
the arguments given to brax's trainer, metrics.csv, tb/, timing.csv,
curves.png, summary.md and brax's params as ppo_params_seed{s}.pkl).

One iteration is one PPO network update (DACER_SPEC §9: "iterations" on the
on-policy curves count network updates): `num_envs` environments each step
`transitions_per_iteration / num_envs` times (2,000 transitions in all), then
`epochs` passes of Adam steps over those transitions in minibatches of
`minibatch_transitions` (brax's `training_step`). metrics.csv has brax's
`eval/episode_reward` and its std over the episodes, then brax's losses: its
means over the iterations since the previous evaluation.

Config fields read (the others, e.g. the replay buffer's and the entropy
regulator's, are recorded in config.yaml but have no PPO meaning):
num_envs; total_iterations and eval_interval (-> num_timesteps, num_evals);
gamma -> discounting; reward_scale -> reward_scaling; lr_actor ->
learning_rate (brax's one Adam trains both networks, so lr_critic is not
read); hidden_sizes / critic_hidden_sizes -> the policy / value widths;
activation -> both networks' (critic_activation is not read);
eval_episodes -> num_eval_envs; seed (seed s of a run trains with brax's
seed = config.seed + s); env and physics.

Seeds run one after another in this process (brax's trainer is not vmapped
over seeds, and each call compiles its own programs), each on one device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import pathlib
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np
from brax.envs.base import Env
from brax.training.acme import running_statistics
from brax.training.agents.ppo import networks as ppo_networks
from brax.training.agents.ppo import train as brax_ppo

from mjx_dacer import on_policy, sinks
from mjx_dacer.config import Config, ConfigError
from mjx_dacer.networks import ACTIVATION_FNS

SETTINGS_FILE = "ppo.yaml"

# metrics.csv's loss columns -> brax's progress_fn metrics (its means over the iterations since the
# previous evaluation), after `on_policy.EVAL_COLUMNS`.
_COLUMNS = {
    "entropy_loss": "training/entropy_loss",
    "policy_loss": "training/policy_loss",
    "total_loss": "training/total_loss",
    "value_loss": "training/v_loss",
}


@dataclasses.dataclass(frozen=True)
class PPOSettings:
    """PPO-only settings (the shared ones come from `Config`, see the module docstring).

    Attributes:
      transitions_per_iteration: env steps per network update, over all environments.
        The paper's on-policy setting (DACER_SPEC §9: 2,000 transitions per iteration).
      minibatch_transitions: transitions per Adam step. The paper's batch of 2,000
        (DACER_SPEC §9), so by default each epoch is one step on the whole iteration's data.
      unroll_length: steps per sequence the advantages are computed over (GAE). MuJoCo's MJX
        tutorial setting for brax's PPO (humanoid: 10); the paper gives none.
      epochs: passes over an iteration's transitions (brax's `num_updates_per_batch`). MJX tutorial: 8.
      clipping_epsilon: the PPO ratio clip. brax's default, 0.3 (the MJX tutorial keeps it).
      entropy_cost: weight of the entropy bonus. MJX tutorial: 1e-3.
      gae_lambda: GAE's lambda. brax's default, 0.95 (the MJX tutorial keeps it).
      normalize_observations: running mean/std normalisation of observations. MJX tutorial: True.
      observation_clip: None (the default): the normalised observations reach the networks unclipped, as
        brax's trainer gives them; a number: clipped to [-observation_clip, observation_clip]
        (`observation_preprocessor`; SB3's VecNormalize uses 10). An entry constant so far (a force that was 0)
        has brax's std floor of 1e-6, so its first nonzero value reaches the rollout's policy at up to 1e7, but
        the losses at only about sqrt(transitions so far): brax updates the statistics with the batch before
        its Adam steps. TRPO needs the clip (`mjx_dacer.trpo.TRPOSettings`); for PPO, 10 against None on
        InvertedDoublePendulum-v5, 4 seeds x 300 iterations, made no difference beyond the seeds' spread and
        no value loss above 100 either way (results/ppo_observation_clip_cpu.md), so brax's behaviour stays.
    """

    transitions_per_iteration: int = 2_000
    minibatch_transitions: int = 2_000
    unroll_length: int = 10
    epochs: int = 8
    clipping_epsilon: float = 0.3
    entropy_cost: float = 1e-3
    gae_lambda: float = 0.95
    normalize_observations: bool = True
    observation_clip: float | None = None


def check(config: Config, settings: PPOSettings = PPOSettings()) -> None:
    """Raises ConfigError (one line, naming the key and the fix) if brax's trainer cannot run `config` exactly."""
    if config.algo != "ppo":
        raise ConfigError(f"mjx_dacer.ppo runs algo ppo, the config has algo {config.algo!r}")
    on_policy.check_config(config, checkpoints=False)
    steps, batch, unroll = settings.transitions_per_iteration, settings.minibatch_transitions, settings.unroll_length
    if steps % batch or batch % unroll:
        raise ConfigError(f"PPOSettings: transitions_per_iteration ({steps}) must be a multiple of "
                          f"minibatch_transitions ({batch}), and that of unroll_length ({unroll})")
    if (steps // unroll) % config.num_envs:
        raise ConfigError(f"ppo: each of the num_envs ({config.num_envs}) environments unrolls an equal number of "
                          f"{unroll}-step sequences, so transitions_per_iteration / unroll_length ({steps // unroll}) "
                          "must be a multiple of num_envs")


def brax_arguments(config: Config, settings: PPOSettings, episode_length: int) -> dict[str, Any]:
    """The keyword arguments of brax's `ppo.train` for `config` (all but the environment, seed and callbacks).

    brax collects batch_size * num_minibatches sequences of unroll_length steps
    per training step (= one iteration here) and runs num_training_steps_per_epoch
    = ceil(num_timesteps / ((num_evals - 1) * that)) steps between evaluations,
    which is `eval_interval` exactly once `check` has passed.
    """
    steps = settings.transitions_per_iteration
    return {
        "num_timesteps": config.total_iterations * steps,
        "num_evals": config.total_iterations // config.eval_interval + 1,  # + the untrained policy's
        "num_envs": config.num_envs,
        "episode_length": episode_length,
        "unroll_length": settings.unroll_length,
        "batch_size": settings.minibatch_transitions // settings.unroll_length,
        "num_minibatches": steps // settings.minibatch_transitions,
        "num_updates_per_batch": settings.epochs,
        "learning_rate": config.lr_actor,
        "discounting": config.gamma,
        "reward_scaling": config.reward_scale,
        "entropy_cost": settings.entropy_cost,
        "clipping_epsilon": settings.clipping_epsilon,
        "gae_lambda": settings.gae_lambda,
        "normalize_observations": settings.normalize_observations,
        "num_eval_envs": config.eval_episodes,
        "deterministic_eval": True,
        "max_devices_per_host": 1,  # one device per seed: the minibatches are not split over devices
    }


def observation_preprocessor(settings) -> Callable:
    """(observations, normaliser state) -> the networks' inputs, for settings with normalize_observations and
    observation_clip (`PPOSettings`, `mjx_dacer.trpo.TRPOSettings`): brax's running normalisation clipped to
    +-observation_clip (unclipped for None), or the identity without normalisation."""
    if not settings.normalize_observations:
        return lambda observations, _: observations
    return functools.partial(running_statistics.normalize, max_abs_value=settings.observation_clip)


def network_factory(config: Config, preprocess_observations_fn: Callable | None = None) -> Callable:
    """brax's `make_ppo_networks` with the config's widths and activation (tanh-Gaussian policy, value MLP).

    With `preprocess_observations_fn` (an `observation_preprocessor`), the networks use it in place of the
    one their caller passes: brax's trainer passes its own normaliser, unclipped.
    """
    make = functools.partial(ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=tuple(config.hidden_sizes),
                             value_hidden_layer_sizes=tuple(config.critic_hidden_sizes),
                             activation=ACTIVATION_FNS[config.activation])
    if preprocess_observations_fn is None:
        return make
    return lambda *args, **kwargs: make(*args, **{**kwargs, "preprocess_observations_fn": preprocess_observations_fn})


def _device_put_replicated(tree, devices):
    """`jax.device_put_replicated` rebuilt from JAX's documented replacement (jax.device_put with a sharding).

    Each leaf (...) becomes (len(devices), ...) with slice i on devices[i]. The mesh axis is named
    like brax's pmap axis ("i"), so the state placed here has the sharding that brax's pmapped programs
    return: the second epoch then reuses the first one's compiled program instead of compiling again.
    """
    sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(devices), (brax_ppo._PMAP_AXIS_NAME,)),
                                          jax.sharding.PartitionSpec(brax_ppo._PMAP_AXIS_NAME))
    return jax.tree.map(lambda x: jax.device_put(np.stack([np.asarray(x)] * len(devices)), sharding), tree)


@contextlib.contextmanager
def _brax_jax_compat() -> Iterator[None]:
    """While brax's trainer runs: `jax.device_put_replicated`, which brax 0.14.2 calls once per training
    run and JAX 0.10 removed, if this JAX lacks it. Removed again afterwards, so nothing else sees it."""
    if hasattr(jax, "device_put_replicated"):
        yield
        return
    jax.device_put_replicated = _device_put_replicated
    try:
        yield
    finally:
        del jax.device_put_replicated


def algorithm(config: Config, env: Env, settings: PPOSettings = PPOSettings()) -> on_policy.Algorithm:
    """PPO as `on_policy.run` drives it: brax's trainer with `brax_arguments`, once per seed."""
    arguments = brax_arguments(config, settings, env.episode_length)

    def train(seeds: Sequence[int], progress: on_policy.ProgressFn):
        (seed,) = seeds  # brax's trainer takes one seed
        with _brax_jax_compat():
            _, params, _ = brax_ppo.train(environment=env, seed=seed,
                                          network_factory=network_factory(config, observation_preprocessor(settings)),
                                          progress_fn=lambda env_steps, metrics: progress(env_steps, [metrics]),
                                          **arguments)
        return [params]

    return on_policy.Algorithm(
        name="ppo", title="brax PPO", columns=_COLUMNS,
        transitions_per_iteration=settings.transitions_per_iteration,
        settings={"settings": dataclasses.asdict(settings), "brax_ppo_train": arguments}, train=train)


def run(config: Config, out: str | pathlib.Path, *, seeds: int | Sequence[int] = 1,
        settings: PPOSettings = PPOSettings(), progress_fn: sinks.ProgressFn = print,
        resume: bool = False, track: str | None = None) -> list[dict]:
    """Train PPO (brax's trainer) for each seed, one after another, and write the run directory `out`.

    Args:
      config: a Config with algo "ppo" (`mjx-dacer train --algo ppo` layers Table 2's networks over the preset);
        with `resume`, the run's config.
      out: the run directory; absent or empty, or with `resume` an earlier PPO run.
      seeds: how many seeds (0..N-1), or which; seed s trains with brax's seed config.seed + s (with `resume`:
        the run's).
      settings: the PPO-only settings (a resumed run must have been started with the same).
      progress_fn: receives every progress line.
      resume: keep the seeds whose training finished (params saved, every evaluation in metrics.csv) and train
        the others from their start: brax's trainer holds a seed's state until it returns, so a seed cannot go
        on from within. Each seed's training depends on its seed alone, so the run ends as an uninterrupted one.
      track: None, or a W&B project: one W&B run per seed (`on_policy.run`).
    Returns:
      metrics.csv's rows: one dict per evaluation point and seed (with `resume`, the kept seeds' too).
    Raises:
      ConfigError: a config brax's trainer cannot run exactly, bad seeds, `out` holds files, or a resume with
        another config or settings, or of a finished run (all before anything is written); RunStopped:
        SIGINT / SIGTERM stopped the run at once (the finished seeds kept).
    """
    check(config, settings)
    return on_policy.run(config, out, functools.partial(algorithm, settings=settings), seeds=seeds,
                         progress_fn=progress_fn, resume=resume, track=track)


__all__ = ["PPOSettings", "SETTINGS_FILE", "algorithm", "brax_arguments", "check", "network_factory",
           "observation_preprocessor", "run"]
