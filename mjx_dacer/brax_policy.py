"""The trained policy of an on-policy run (PPO, TRPO): brax's tanh-Gaussian network with one seed's parameters.

`mjx-dacer eval` evaluates it as it does a `policy.msgpack` (`load` returns a
`policy_runtime.RunPolicy`); the deterministic action is the tanh of the
Gaussian's mean, the action the training's evaluation points took. The network
is rebuilt from the run directory alone: config.yaml (widths, activation, task)
and NAME.yaml (whether and how the observations were normalised), with the
task's sizes from `envs.make`. Where the parameters come from:

    ppo    ppo_params_seed{s}.pkl (`brax.io.model.save_params`' pickle of (normaliser, policy, value)),
           which brax's trainer gives back only when seed s's training ends: iteration total_iterations
    trpo   the newest usable checkpoint, read only: iteration (its epochs) x eval_interval. The
           trpo_params_seed{s}.pkl beside it are written just before each checkpoint, so a run stopped
           between the two holds pickles newer than any record of their iteration; the checkpoint is exact

Nothing in the run directory is written.
"""

from __future__ import annotations

import functools
import pathlib
import pickle
from typing import Any, Sequence

import jax
import numpy as np
import yaml
from brax.training.agents.ppo import networks as ppo_networks

from mjx_dacer import envs, on_policy, ppo, trpo
from mjx_dacer.checkpoint import Checkpointer
from mjx_dacer.config import Config, ConfigError
from mjx_dacer.errors import CheckpointError
from mjx_dacer.policy_runtime import RunPolicy
from mjx_dacer.rundir import RunDir, RunSpec

# algo -> (its settings' dataclass, its Algorithm as `on_policy.run` builds it)
_ALGORITHMS = {"ppo": (ppo.PPOSettings, ppo.algorithm), "trpo": (trpo.TRPOSettings, trpo.algorithm)}


class BraxPolicy(RunPolicy):
    """One seed of a PPO or TRPO run as a `RunPolicy`.

    params: brax's (normaliser state, policy params, value params) of the seed, the tuple
    `brax.io.model.load_params` returns. deterministic: True: tanh of the Gaussian's mean (evaluation);
    False: a sample of the tanh-Gaussian (the behaviour policy). skipped: the newer checkpoints that were
    unusable when it was read from one (one line each), else empty.
    """

    skipped: tuple[str, ...] = ()

    def __init__(self, inference, params: Any, config: Config, obs_size: int, action_size: int, run: int, label: str,
                 seed: int, iteration: int, num_runs: int, deterministic: bool = True, key_seed: int = 0):
        """inference: brax's `make_inference_fn` of the run's networks (one per network: see `_networks`)."""
        self._inference = inference
        super().__init__(_compiled_step(inference, bool(deterministic)), params, config, obs_size, action_size,
                         run, label, seed, iteration, num_runs, deterministic, key_seed)

    def act(self, params: Any, obs: jax.Array, key: jax.Array) -> jax.Array:
        action, _ = self._inference(params, deterministic=self.deterministic)(obs, key)
        return action


@functools.lru_cache(maxsize=None)
def _compiled_step(inference, deterministic: bool):
    """One jitted (params, obs (N, S), key) -> (actions (N, A), next key) per network: every seed shares it."""

    def step(params, obs: jax.Array, key: jax.Array):
        key, sub = jax.random.split(key)
        return inference(params, deterministic=deterministic)(obs, sub)[0], key

    return jax.jit(step)


@functools.lru_cache(maxsize=None)
def _networks(config: Config, settings: Any, obs_size: int, action_size: int):
    """(the run's networks, their inference function), built once per (config, settings, sizes), so that every
    seed's policy has the same inference function and so shares `_compiled_step`'s compilation."""
    networks = ppo.network_factory(config, ppo.observation_preprocessor(settings))(obs_size, action_size)
    return networks, ppo_networks.make_inference_fn(networks)


def _settings(run_dir: RunDir, algo: str):
    """The algorithm's settings as the run recorded them in NAME.yaml."""
    path = run_dir.path / f"{algo}.yaml"
    try:
        stored = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path} cannot be read ({type(e).__name__}): it records how the {algo} run normalised "
                          "its observations, which its policy needs") from None
    cls = _ALGORITHMS[algo][0]
    try:
        return cls(**stored["settings"])
    except (TypeError, KeyError):
        raise ConfigError(f"{path} does not hold {cls.__name__} (written by another mjx_dacer version?)") from None


def _params(run_dir: RunDir, algo: str, config: Config, spec: RunSpec, settings, env, runs: Sequence[int]):
    """(brax's params of each of `runs`, the iteration they were saved at, the unusable newer checkpoints passed
    over); see the module docstring. A TRPO run's checkpoint is restored once for all of them."""
    if algo == "ppo":
        params = []
        for index in runs:
            path = on_policy.params_path(run_dir, algo, spec.seeds[index])
            if not path.is_file():
                raise CheckpointError(f"{run_dir.path} has no {path.name}: seed {spec.seeds[index]}'s training did "
                                      "not finish (brax's PPO trainer gives its policy back only at the end)")
            try:
                params.append(pickle.loads(path.read_bytes()))
            except Exception:  # unpickling raises many kinds of errors on damaged data
                raise CheckpointError(f"{path} is damaged: it does not unpickle") from None
        return params, config.total_iterations, ()
    algorithm = _ALGORITHMS[algo][1](config, on_policy.KeepMetricKeys(env), settings)
    checkpointer = Checkpointer(run_dir.path, read_only=True)
    try:
        restored = on_policy.restore(checkpointer, algorithm, config, spec)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; a {algo} run's policy is read from its newest checkpoint, which knows its "
                              f"iteration (its {algo}_params_seed*.pkl, if any, load with brax.io.model.load_params)"
                              ) from None
    finally:
        checkpointer.close()
    every = algorithm.program.params(restored.state)
    return [every[i] for i in runs], restored.chunks_done * config.eval_interval, tuple(restored.skipped)


def _check_shapes(networks, params, path: pathlib.Path) -> None:
    """The params must have exactly the shapes of the networks config.yaml describes."""
    expected = jax.eval_shape(lambda key: (networks.policy_network.init(key), networks.value_network.init(key)),
                              jax.random.PRNGKey(0))
    shapes = lambda tree: jax.tree.map(lambda x: tuple(np.shape(x)), tree)  # noqa: E731
    try:
        same = shapes(tuple(params[1:])) == shapes(expected)
    except (TypeError, IndexError, ValueError):
        same = False
    if not same:
        raise CheckpointError(f"the policy in {path} does not match the networks its config.yaml describes")


def load(path: str | pathlib.Path, run: int = 0, deterministic: bool = True, seed: int = 0) -> BraxPolicy:
    """Run `run` (its index in config.yaml's seeds) of the PPO or TRPO run directory `path`, as a callable policy.

    Raises:
      ConfigError: not a run directory, not an on-policy run, or its settings file is unreadable;
      ValueError: run out of range; CheckpointError: no policy saved for it, or a damaged or mismatching one.
      One line each. The policy's `skipped` names newer checkpoints that were unusable (TRPO).
    """
    return load_runs(path, [run], deterministic=deterministic, seed=seed)[0]


def load_runs(path: str | pathlib.Path, runs: Sequence[int] | None = None, deterministic: bool = True,
              seed: int = 0) -> list[BraxPolicy]:
    """Several runs of `path` (every one by default) as `load` gives each; a TRPO run's checkpoint is read once,
    so all come from the same one. The same errors as `load`."""
    run_dir, config, spec = RunDir.open(path)
    if config.algo not in _ALGORITHMS:
        raise ConfigError(f"{path} is a {config.algo} run, not an on-policy (ppo, trpo) one")
    num_runs = len(spec.seeds)
    runs = range(num_runs) if runs is None else runs
    for run in runs:
        if not isinstance(run, (int, np.integer)) or not 0 <= run < num_runs:
            raise ValueError(f"run {run} does not exist: {path} has runs 0..{num_runs - 1} (seeds "
                             f"{', '.join(map(str, spec.seeds))})")
    runs = [int(run) for run in runs]
    settings = _settings(run_dir, config.algo)
    env = envs.make(config.env, physics=config.physics)
    params, iteration, skipped = _params(run_dir, config.algo, config, spec, settings, env, runs)
    networks, inference = _networks(config, settings, env.observation_size, env.action_size)
    policies = []
    for run, run_params in zip(runs, params):
        _check_shapes(networks, run_params, run_dir.path)
        policy = BraxPolicy(inference, run_params, config, env.observation_size, env.action_size, run,
                            spec.label(0), spec.seeds[run], iteration, num_runs, deterministic, seed)
        policy.skipped = skipped
        policies.append(policy)
    return policies


__all__ = ["BraxPolicy", "load", "load_runs"]
