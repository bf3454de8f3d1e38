"""The policy artifact: a trained diffusion policy in one small file, and a callable to use it.

`save_policy` writes ``policy.msgpack``: the noise network's parameters of every
run of a (seeds x grid) batch, their log_alpha and noise_scale, the run's
config and the sizes needed to rebuild the network. Nothing of the replay
buffer, the critics or the optimiser states, so it stays small (the full
training state is the orbax checkpoint's job). `load_policy` turns one run of
it back into a numpy-in, numpy-out function:

    policy = load_policy("runs/hopper")             # or ".../policy.msgpack"
    action = policy(obs)                            # (S,) -> (A,), or (N, S) -> (N, A), in [-1, 1]

File format (msgpack, via flax.serialization): an envelope
``{"format": FORMAT, "version": VERSION, "crc32": int, "body": bytes}`` whose
body is itself msgpack of::

    config          dict     Config as `config.to_dict` writes it
    obs_size        int      S
    action_size     int      A
    num_runs        int      B
    labels          [str]    grid point label of each run
    seeds           [int]    seed of each run
    iteration       int      training iterations done when it was written
    policy_params   pytree   the NoisePredictor's params, every leaf with leading axis B
    log_alpha       (B,)     float32
    noise_scale     (B,)     float32, lambda of Eq. 16 (per run: grid searches may sweep it)

The CRC32 of the body lets `load_policy` tell a damaged or truncated file from
a valid one; the write itself is atomic (temp file, fsync, rename), so a crash
mid-write leaves the previous artifact in place.
"""

from __future__ import annotations

import functools
import os
import pathlib
import tempfile
import zlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, struct

from mjx_dacer.config import Config, from_dict, to_dict
from mjx_dacer.dacer import DACER

FORMAT = "mjx_dacer.policy"
VERSION = 1
FILENAME = "policy.msgpack"

Params = Any
PathLike = str | os.PathLike


@struct.dataclass
class PolicyParams:
    """What one run's policy learned. network: NoisePredictor params; the others are scalars."""

    network: Params
    log_alpha: jax.Array
    noise_scale: jax.Array


# ------------------------------------------------------------------- writing
def save_policy(
    path: PathLike,
    config: Config,
    policy_params: Params,
    log_alpha: Any,
    labels: Sequence[str],
    seeds: Sequence[int],
    iteration: int,
    *,
    noise_scale: Any,
    obs_size: int,
    action_size: int,
) -> pathlib.Path:
    """Write the policies of a B-run batch to ``path`` atomically; returns the path.

    Args:
      path: the file to (over)write, e.g. ``RUN_DIR / "policy.msgpack"``.
      config: the run's Config.
      policy_params: NoisePredictor params, every leaf with leading axis B.
      log_alpha: (B,) log of the entropy regulator's alpha.
      labels, seeds: B grid point labels and seeds (the runner's entry order).
      iteration: training iterations done (counted after the warm-up).
      noise_scale: (B,) lambda of Eq. 16 of each run: the vmapped HParams' value (a sweep may vary it).
      obs_size, action_size: S and A of the task.
    Raises:
      ValueError: inconsistent batch sizes or parameters that do not fit the config's network.
    """
    path = pathlib.Path(path)
    params = jax.tree.map(np.asarray, jax.device_get(policy_params))
    log_alpha = np.asarray(jax.device_get(log_alpha), np.float32).reshape(-1)
    num_runs = log_alpha.shape[0]
    noise_scale = np.broadcast_to(np.asarray(jax.device_get(noise_scale), np.float32), (num_runs,)).copy()
    labels, seeds = [str(x) for x in labels], [int(x) for x in seeds]
    lead = {x.shape[0] if x.ndim else None for x in jax.tree.leaves(params)}
    if lead != {num_runs} or len(labels) != num_runs or len(seeds) != num_runs:
        raise ValueError(
            f"save_policy: batch sizes disagree (log_alpha {num_runs}, params' leading axes {sorted(lead, key=str)}, "
            f"{len(labels)} labels, {len(seeds)} seeds); pass one entry per run"
        )
    _check_params(config, int(obs_size), int(action_size), params)

    body = {
        "config": to_dict(config),
        "obs_size": int(obs_size),
        "action_size": int(action_size),
        "num_runs": num_runs,
        "labels": labels,
        "seeds": seeds,
        "iteration": int(iteration),
        "policy_params": params,
        "log_alpha": log_alpha,
        "noise_scale": noise_scale,
    }
    payload = serialization.msgpack_serialize(body)
    envelope = {"format": FORMAT, "version": VERSION, "crc32": zlib.crc32(payload), "body": payload}
    _write_atomically(path, serialization.msgpack_serialize(envelope))
    return path


def _write_atomically(path: pathlib.Path, data: bytes) -> None:
    """temp file in the same directory -> fsync -> os.replace -> fsync the directory.

    Readers see either the old file or the complete new one; a crash leaves at
    most a hidden ``.policy.msgpack.*.tmp`` that nothing reads.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not every platform can open a directory
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _check_params(config: Config, obs_size: int, action_size: int, params: Params) -> None:
    """The params (one run) must have exactly the shapes the config's network has."""
    agent = DACER.from_config(config, obs_size, action_size)
    expected = jax.eval_shape(agent.init, jax.random.PRNGKey(0)).policy_params
    want = jax.tree.map(lambda x: tuple(x.shape), expected)
    try:
        got = jax.tree.map(lambda x: tuple(x.shape[1:]), params)
        same = jax.tree.structure(want) == jax.tree.structure(got) and jax.tree.leaves(want) == jax.tree.leaves(got)
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(
            f"policy params do not match the config's network (hidden_sizes {list(config.hidden_sizes)}, "
            f"obs_size {obs_size}, action_size {action_size})"
        )


# ------------------------------------------------------------------- reading
def artifact_path(path: PathLike) -> pathlib.Path:
    """The artifact file of ``path``: the file itself, or ``path/policy.msgpack`` for a run directory."""
    p = pathlib.Path(path)
    if p.is_dir():
        p = p / FILENAME
        if not p.is_file():
            raise ValueError(f"{path} holds no {FILENAME} (a run writes it at every checkpoint); check the run directory")
    elif not p.exists():
        raise ValueError(f"no policy at {path}: no such file or directory")
    return p


def read_artifact(path: PathLike) -> dict[str, Any]:
    """The decoded body of an artifact file or run directory (see the module docstring).

    Raises:
      ValueError: missing file, or a file that is not a (complete) policy artifact.
    """
    file = artifact_path(path)
    try:
        envelope = serialization.msgpack_restore(file.read_bytes())
    except Exception:  # msgpack raises many kinds of errors on foreign or truncated data
        envelope = None
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise ValueError(f"{file} is not an mjx_dacer policy artifact (written by save_policy / mjx-dacer train)")
    if not isinstance(envelope.get("version"), int) or envelope["version"] > VERSION:
        raise ValueError(f"{file} has policy format version {envelope.get('version')!r}; this mjx_dacer reads "
                         f"up to {VERSION}: upgrade mjx_dacer")
    payload = envelope.get("body")
    if not isinstance(payload, bytes) or zlib.crc32(payload) != envelope.get("crc32"):
        raise ValueError(f"{file} is damaged (checksum mismatch): re-copy it or take it from the run again")
    body = serialization.msgpack_restore(payload)
    try:
        body["config"] = from_dict(body["config"])
    except ValueError as e:  # ConfigError included
        raise ValueError(f"{file}: its stored config does not load ({str(e).splitlines()[0]})") from None
    return body


def load_policy(path: PathLike, run: int = 0, deterministic: bool = True, seed: int = 0) -> "Policy":
    """One run of an artifact as a callable `Policy`.

    Args:
      path: the artifact file, or a run directory holding ``policy.msgpack``.
      run: index into the artifact's B runs (the runner's order: grid-major, seeds inner).
      deterministic: True: the chain's a0 (evaluation); False: add Eq. 16's behaviour noise.
      seed: seed of the PRNG key the chain samples with; each call advances it.
    Raises:
      ValueError with a one-line message: missing file, not an artifact, run out of range.
    """
    body = read_artifact(path)
    num_runs = int(body["num_runs"])
    if not isinstance(run, (int, np.integer)) or not 0 <= run < num_runs:
        raise ValueError(f"run {run} is out of range: {path} holds {num_runs} run(s), indices 0..{num_runs - 1}")
    run = int(run)
    params = PolicyParams(
        network=jax.tree.map(lambda x: jnp.asarray(x[run]), body["policy_params"]),
        log_alpha=jnp.asarray(body["log_alpha"][run], jnp.float32),
        noise_scale=jnp.asarray(body["noise_scale"][run], jnp.float32),
    )
    agent = DACER.from_config(body["config"], int(body["obs_size"]), int(body["action_size"]))
    return Policy(
        agent=agent, params=params, config=body["config"], run=run, label=body["labels"][run],
        seed=int(body["seeds"][run]), iteration=int(body["iteration"]), num_runs=num_runs,
        deterministic=deterministic, key_seed=seed,
    )


# ------------------------------------------------------------------- acting
def policy_action(agent: DACER, deterministic: bool, params: PolicyParams, obs: jax.Array, key: jax.Array) -> jax.Array:
    """Pure: obs (N, S) -> actions (N, A) in [-1, 1]; a0 of the chain, plus Eq. 16's noise unless deterministic."""
    if deterministic:
        return agent.deterministic_action(params.network, obs, key)
    return agent.behaviour_action(params.network, obs, key, params.log_alpha, params.noise_scale)


@functools.lru_cache(maxsize=None)
def _compiled_step(agent: DACER, deterministic: bool):
    """One jitted (params, obs, key) -> (actions, next key) per network structure, shared by all Policy objects."""

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
      config, env_name, run, label, seed (the training seed), iteration, num_runs,
      obs_size, action_size, deterministic, agent (the DACER structure),
      params (`PolicyParams`), key (the current PRNG key).
    """

    def __init__(self, agent: DACER, params: PolicyParams, config: Config, run: int, label: str, seed: int,
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


__all__ = ["FILENAME", "Policy", "PolicyParams", "artifact_path", "load_policy", "policy_action", "read_artifact",
           "save_policy"]
