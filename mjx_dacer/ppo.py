"""PPO as a baseline: brax's maintained trainer (`brax.training.agents.ppo.train.train`) on our MJX tasks.

PPO is on-policy, so it does not fit the shared compiled program (replay
buffer, warm-up, vmapped seeds); `run` calls brax's trainer once per seed on
`envs.make(config.env, physics=config.physics)` and writes an ordinary run
directory with the same writers as the off-policy algorithms (`RunDir`, the
sinks, `report`), so `mjx-dacer table` and `plot` read it beside DACER runs:

    RUN_DIR/
      config.yaml             the Config (algo: ppo), seeds and grid (`RunDir.create`)
      ppo.yaml                `PPOSettings` and the arguments given to brax's trainer
      metrics.csv, tb/        one row per evaluation point and seed (`sinks.CsvSink`, `sinks.TensorBoardSink`)
      timing.csv              the seed's own wall clock at each evaluation (`sinks.TIMING_COLUMNS`)
      curves.png, summary.md  `sinks.ReportSink`
      ppo_params_seed{s}.pkl  brax's (normalizer, policy, value) params of seed s after training,
                              `brax.io.model.save_params` (a pickle); `mjx-dacer eval` does not read them

One iteration is one PPO network update (DACER_SPEC §9: "iterations" on the
on-policy curves count network updates): `num_envs` environments each step
`transitions_per_iteration / num_envs` times (2,000 transitions in all), then
`epochs` passes of Adam steps over those transitions in minibatches of
`minibatch_transitions` (brax's `training_step`). So `env_steps` =
`iteration * transitions_per_iteration` exactly; there is no warm-up.
Evaluation points are iteration 0 (the untrained policy) and every
`eval_interval` iterations: `eval_episodes` deterministic episodes (the
tanh-Gaussian's mode) of at most the task's `episode_length` steps, brax's
`eval/episode_reward` and its std over the episodes.

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
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import numpy as np
import yaml
from brax.envs.base import State, Wrapper
from brax.io import model
from brax.training.agents.ppo import networks as ppo_networks
from brax.training.agents.ppo import train as brax_ppo

from mjx_dacer import envs, sinks
from mjx_dacer.config import Config, ConfigError
from mjx_dacer.networks import ACTIVATION_FNS
from mjx_dacer.rundir import RunDir, RunSpec

SETTINGS_FILE = "ppo.yaml"

# metrics.csv column -> brax progress_fn metric, in column order: the evaluation first (as
# `sinks.LEADING_COLUMNS`), then the losses by name. The losses are brax's means over the iterations
# since the previous evaluation; the untrained policy's evaluation has none (None: a blank in the CSV).
_COLUMNS = {
    "eval_return": "eval/episode_reward",
    "eval_return_std": "eval/episode_reward_std",
    "eval_length": "eval/avg_episode_length",
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
    """

    transitions_per_iteration: int = 2_000
    minibatch_transitions: int = 2_000
    unroll_length: int = 10
    epochs: int = 8
    clipping_epsilon: float = 0.3
    entropy_cost: float = 1e-3
    gae_lambda: float = 0.95
    normalize_observations: bool = True


def check(config: Config, settings: PPOSettings) -> None:
    """Raises ConfigError (one line, naming the key and the fix) if brax's trainer cannot run `config` exactly."""
    if config.algo != "ppo":
        raise ConfigError(f"mjx_dacer.ppo runs algo ppo, the config has algo {config.algo!r}")
    if config.warmup_steps:
        raise ConfigError(f"ppo has no warm-up (it is on-policy), got warmup_steps {config.warmup_steps}; "
                          "set warmup_steps=0 (--algo ppo does)")
    if config.checkpoint_interval != 1:
        raise ConfigError("ppo writes no checkpoints (brax's trainer holds its state in memory and cannot resume "
                          f"exactly), got checkpoint_interval {config.checkpoint_interval}; drop the key")
    if config.total_iterations % config.eval_interval:
        raise ConfigError(f"ppo evaluates after equal epochs of eval_interval iterations: total_iterations "
                          f"({config.total_iterations}) must be a multiple of eval_interval ({config.eval_interval})")
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


def network_factory(config: Config) -> Callable:
    """brax's `make_ppo_networks` with the config's widths and activation (tanh-Gaussian policy, value MLP)."""
    return functools.partial(ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=tuple(config.hidden_sizes),
                             value_hidden_layer_sizes=tuple(config.critic_hidden_sizes),
                             activation=ACTIVATION_FNS[config.activation])


def evaluation_row(run: int, seed: int, iteration: int, env_steps: int, metrics: Mapping[str, Any]) -> dict:
    """metrics.csv's row for one evaluation: the id columns, then `_COLUMNS` (None where brax gave no value)."""
    values = {column: float(metrics[key]) if key in metrics else None for column, key in _COLUMNS.items()}
    return {"run": run, "label": "default", "seed": seed, "iteration": iteration, "env_steps": env_steps, **values}


def progress_line(row: dict, total_iterations: int, elapsed: float) -> str:
    """'[ppo seed 0] iter 10/100 env steps 20000 | eval return -123.4 | elapsed 0m42s'."""
    return (f"[ppo seed {row['seed']}] iter {row['iteration']}/{total_iterations} env steps {row['env_steps']} | "
            f"eval return {row['eval_return']:.1f} | elapsed {sinks.duration(elapsed)}")


class KeepMetricKeys(Wrapper):
    """A task whose `step` keeps every metric key the state came in with.

    Our tasks' `step` returns only the metrics it computes. brax's evaluation
    wrapper adds a "reward" metric at reset and then scans over `step`, and a
    scan needs the same keys after a step as before; so the keys a wrapper
    added are carried over (their values are the wrapper's to update).
    """

    def step(self, state: State, action: jax.Array) -> State:
        nxt = self.env.step(state, action)
        return nxt.replace(metrics={**state.metrics, **nxt.metrics})


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


class _Recorder:
    """brax's progress_fn for one seed: each evaluation becomes a row for the sinks and a progress line.

    brax calls it with (env steps so far, metrics) at iteration 0 and after
    every epoch of `eval_interval` iterations, so the k-th call is iteration
    k * eval_interval; its env step count is checked against that.
    """

    def __init__(self, run: int, seed: int, config: Config, settings: PPOSettings, sinks_: Sequence[sinks.Sink],
                 progress: sinks.ProgressFn, started: float, evaluations_before: int, evaluations_total: int):
        self.run, self.seed, self.config, self.settings = run, seed, config, settings
        self.sinks, self.progress, self.started = sinks_, progress, started
        self.evaluations, self.evaluations_before, self.evaluations_total = 0, evaluations_before, evaluations_total
        self.last_time, self.last_iteration = time.perf_counter(), 0
        self.seed_started = self.last_time  # this seed's own wall clock (timing.csv): seeds train one by one
        self.rows: list[dict] = []

    def __call__(self, env_steps: int, metrics: Mapping[str, Any]) -> None:
        iteration = self.evaluations * self.config.eval_interval
        expected = iteration * self.settings.transitions_per_iteration
        if int(env_steps) != expected:
            raise RuntimeError(f"brax's PPO reported {env_steps} env steps at evaluation {self.evaluations}, "
                               f"expected {expected} (iteration {iteration})")
        row = evaluation_row(self.run, self.seed, iteration, expected, metrics)
        now = time.perf_counter()
        seconds = now - self.last_time
        done = self.evaluations_before + self.evaluations + 1
        result = sinks.ChunkResult(
            chunk=done, num_chunks=self.evaluations_total, iteration=iteration, env_steps=expected, warmup=False,
            seconds=seconds, eta_seconds=(now - self.started) / done * (self.evaluations_total - done),
            env_steps_per_second=(iteration - self.last_iteration) * self.settings.transitions_per_iteration / seconds,
            updates_per_second=(iteration - self.last_iteration) / seconds, rows=[row],
            # brax compiles inside its trainer: compile_seconds is not known (the first evaluation's time has it).
            timing={"run": self.run, "chunk": done, "iteration": iteration, "env_steps": expected,
                    "wall_seconds": round(now - self.seed_started, 3), "chunk_seconds": round(seconds, 3),
                    "compile_seconds": None, "session": 1},
        )
        for sink in self.sinks:
            sink.write(result)
        self.rows.append(row)
        self.progress(progress_line(row, self.config.total_iterations, now - self.started))
        self.evaluations += 1
        self.last_time, self.last_iteration = now, iteration


def run(config: Config, out: str | pathlib.Path, *, seeds: int | Sequence[int] = 1,
        settings: PPOSettings = PPOSettings(), progress_fn: sinks.ProgressFn = print) -> list[dict]:
    """Train PPO (brax's trainer) for each seed, one after another, and write the run directory `out`.

    Args:
      config: a Config with algo "ppo" (`mjx-dacer train --algo ppo` layers Table 2's networks over the preset).
      out: the run directory; absent or empty.
      seeds: how many seeds (0..N-1), or which; seed s trains with brax's seed config.seed + s.
      settings: the PPO-only settings.
      progress_fn: receives every progress line.
    Returns:
      metrics.csv's rows: one dict per evaluation point and seed.
    Raises:
      ConfigError: a config brax's trainer cannot run exactly, bad seeds, or `out` holds files
        (all before anything is written).
    """
    check(config, settings)
    spec = RunSpec(grid=({},), seeds=tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds))
    spec.validate(config)
    out = pathlib.Path(out)
    RunDir.check_new(out)
    env = KeepMetricKeys(envs.make(config.env, physics=config.physics))
    arguments = brax_arguments(config, settings, env.episode_length)

    run_dir = RunDir.create(out, config, spec)
    (run_dir.path / SETTINGS_FILE).write_text(yaml.safe_dump(
        {"settings": dataclasses.asdict(settings), "brax_ppo_train": arguments}, sort_keys=False))
    outputs: list[sinks.Sink] = [
        sinks.CsvSink(run_dir), sinks.TensorBoardSink(run_dir),
        sinks.ReportSink(run_dir, f"PPO on {config.env}", config.total_iterations),
    ]
    for sink in outputs:
        sink.start([])
    per_seed = arguments["num_evals"]
    progress_fn(f"{config.env}: brax PPO, {len(spec.seeds)} seed(s) one after another, {config.total_iterations} "
                f"iterations x {settings.transitions_per_iteration} transitions ({config.num_envs} envs), "
                f"{per_seed} evaluations per seed, on 1 {jax.default_backend()} device; compiling...")
    started, rows = time.perf_counter(), []
    try:
        for b, seed in enumerate(spec.seeds):
            recorder = _Recorder(b, seed, config, settings, outputs, progress_fn, started,
                                 evaluations_before=b * per_seed, evaluations_total=len(spec.seeds) * per_seed)
            with _brax_jax_compat():
                _, params, _ = brax_ppo.train(environment=env, seed=config.seed + seed, progress_fn=recorder,
                                              network_factory=network_factory(config), **arguments)
            model.save_params(str(run_dir.path / f"ppo_params_seed{seed}.pkl"), jax.device_get(params))
            rows.extend(recorder.rows)
    finally:
        for sink in outputs:
            sink.close()
    return rows


__all__ = ["KeepMetricKeys", "PPOSettings", "SETTINGS_FILE", "brax_arguments", "check", "evaluation_row",
           "network_factory", "progress_line", "run"]
