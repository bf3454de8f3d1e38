"""The policy artifact: a trained diffusion policy in one small file.

`save_policy` writes ``policy.msgpack``: the noise network's parameters of every
run of a (seeds x grid) batch, their log_alpha and noise_scale, the run's
config and the sizes needed to rebuild the network. Nothing of the replay
buffer, the critics or the optimiser states, so it stays small (the full
training state is the orbax checkpoint's job). `load_policy` turns one run of
it back into a numpy-in, numpy-out `Policy` (`mjx_dacer.policy_runtime`, which
does no IO; its names are importable from here too):

    policy = load_policy("runs/hopper")             # or ".../policy.msgpack"
    action = policy(obs)                            # (S,) -> (A,), or (N, S) -> (N, A), in [-1, 1]

File format (msgpack, via flax.serialization): an envelope

    format          str      FORMAT, "mjx_dacer.policy": tells an artifact from any other msgpack file
    version         int      VERSION of the body's layout; a reader rejects newer versions
    crc32           int      CRC32 of ``body`` (`artifact_io.checksums` of it as one blob)
    body            bytes    msgpack of the fields below

whose body holds::

    config          dict     Config as `config.to_dict` writes it
    obs_size        int      S, the task's observation size (given by the caller, never inferred)
    action_size     int      A, the task's action size (likewise)
    num_runs        int      B
    labels          [str]    grid point label of each run
    seeds           [int]    seed of each run
    iteration       int      training iterations done when it was written (counted after the warm-up)
    policy_params   pytree   the policy network's params (DACER: the NoisePredictor; SAC: the actor;
                             config.algo names it), every leaf with leading axis B
    log_alpha       (B,)     float32
    noise_scale     (B,)     float32, lambda of Eq. 16 of each run, as trained (grid searches may sweep it)

The checksum covers the whole body (metadata included), so `read_artifact`
tells a damaged or truncated file from a valid one; the write is
`artifact_io.write_atomically`, so a crash mid-write leaves the previous
artifact in place.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from mjx_dacer.artifact_io import checksums, write_atomically
from mjx_dacer.config import Config, from_dict, to_dict
from mjx_dacer.agents import make_agent
from mjx_dacer.errors import PolicyFileError
from mjx_dacer.policy_runtime import Policy, PolicyParams, RunPolicy, policy_action

FORMAT = "mjx_dacer.policy"
VERSION = 1
FILENAME = "policy.msgpack"
BODY_FIELDS = ("config", "obs_size", "action_size", "num_runs", "labels", "seeds", "iteration", "policy_params",
               "log_alpha", "noise_scale")

Params = Any
PathLike = str | os.PathLike


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
      policy_params: the policy network's params (config.algo's), every leaf with leading axis B.
      log_alpha: (B,) log of the entropy regulator's alpha.
      labels, seeds: B grid point labels and seeds (the runner's entry order).
      iteration: training iterations done (counted after the warm-up).
      noise_scale: (B,) or () lambda of Eq. 16 of each run: the vmapped HParams' value. Required, with no
        default from ``config.noise_scale``: a sweep trains each run with its own value.
      obs_size, action_size: S and A of the task (the env's sizes; not read off the parameters).
    Raises:
      ValueError: inconsistent batch sizes or parameters that do not fit the config's network.
    """
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
    [crc] = checksums(payload)
    envelope = {"format": FORMAT, "version": VERSION, "crc32": crc, "body": payload}
    return write_atomically(path, serialization.msgpack_serialize(envelope))


def export_policy(run_dir: PathLike, config: Config, agent, state: Any, hparams: Any, labels: Sequence[str],
                  seeds: Sequence[int], iteration: int, obs_size: int, action_size: int) -> pathlib.Path:
    """Write ``RUN_DIR/policy.msgpack`` from a batched agent state: what the agent exports of each run.

    state, hparams: the agent's state and HParams with the run axis (the runner's, or a checkpoint's
    via `mjx_dacer.trained`); the run at every checkpoint and `mjx-dacer export` both call this.
    """
    policy = jax.device_get(agent.policy_export(state, hparams))  # each run's own hyperparameters (a sweep's)
    return save_policy(pathlib.Path(run_dir) / FILENAME, config, labels=labels, seeds=seeds, iteration=iteration,
                       obs_size=obs_size, action_size=action_size, **policy)


def _check_params(config: Config, obs_size: int, action_size: int, params: Params) -> None:
    """The params (one run) must have exactly the shapes the config's network has for (S, A)."""
    agent = make_agent(config, obs_size, action_size)
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
    """The artifact file of ``path``: the file itself, or ``path/policy.msgpack`` for a run directory.

    Raises:
      PolicyFileError (a ValueError): no such file, or a directory without the artifact.
    """
    p = pathlib.Path(path)
    if p.is_dir():
        p = p / FILENAME
        if not p.is_file():
            raise PolicyFileError(f"{path} holds no {FILENAME} (a run writes it at every checkpoint); "
                                  "check the run directory")
    elif not p.exists():
        raise PolicyFileError(f"no policy at {path}: no such file or directory")
    elif p.suffix in (".yaml", ".yml"):  # e.g. a run's config.yaml given for the run
        raise PolicyFileError(f"{path} is a YAML file, not a policy; pass the run directory ({p.parent}) "
                              f"or its {FILENAME}")
    return p


def read_artifact(path: PathLike) -> dict[str, Any]:
    """The decoded body of an artifact file or run directory (fields: see the module docstring).

    ``config`` comes back as a Config, the arrays as numpy arrays.

    Raises:
      PolicyFileError (a CheckpointError and a ValueError) with a one-line message: missing or unreadable
      file, a file that is not a policy artifact, a newer format version, a damaged or truncated file.
    """
    file = artifact_path(path)
    try:
        data = file.read_bytes()
    except OSError as e:
        raise PolicyFileError(f"cannot read {file}: {e.strerror or e}") from None
    try:
        envelope = serialization.msgpack_restore(data)
    except Exception:  # msgpack raises many kinds of errors on foreign or truncated data
        envelope = None
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise PolicyFileError(f"{file} is corrupt or truncated, or not an mjx_dacer policy file "
                              f"(written by mjx-dacer train){_recovery_hint(file)}")
    if not isinstance(envelope.get("version"), int) or envelope["version"] > VERSION:
        raise PolicyFileError(f"{file} has policy format version {envelope.get('version')!r}; this mjx_dacer "
                              f"reads up to {VERSION}: upgrade mjx_dacer")
    payload = envelope.get("body")
    if not isinstance(payload, bytes) or checksums(payload) != [envelope.get("crc32")]:
        raise PolicyFileError(f"{file} is corrupt or truncated (checksum mismatch){_recovery_hint(file)}")
    try:
        body = serialization.msgpack_restore(payload)
    except Exception:  # a checksum that matches a body msgpack cannot read: not written by save_policy
        body = None
    missing = [k for k in BODY_FIELDS if k not in body] if isinstance(body, dict) else list(BODY_FIELDS)
    if missing:
        raise PolicyFileError(f"{file} is damaged: its body lacks {', '.join(missing)}")
    try:
        body["config"] = from_dict(body["config"])
    except ValueError as e:  # ConfigError included
        raise PolicyFileError(f"{file}: its stored config does not load ({str(e).splitlines()[0]})") from None
    return body


def _recovery_hint(file: pathlib.Path) -> str:
    """Where a good copy can come from: the run's checkpoints, if the file sits in a run directory with some."""
    checkpoints = file.parent / "checkpoints"
    steps = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()) if checkpoints.is_dir() else []
    if steps:
        return (f"; re-export it from the newest checkpoint ({checkpoints}/{steps[-1]}): "
                f"mjx-dacer export {file.parent}")
    return "; copy it again from where it was trained"


def on_policy_run(path: PathLike) -> bool:
    """Whether `path` is the run directory of an on-policy algorithm (PPO, TRPO), whose policies are brax's."""
    import yaml

    from mjx_dacer import agents

    config = pathlib.Path(path) / "config.yaml"
    try:
        values = yaml.safe_load(config.read_text()) if config.is_file() else None
    except (OSError, yaml.YAMLError):
        return False  # not a run directory this check can read: reading the artifact names the problem
    algo = values.get("algo") if isinstance(values, dict) else None
    return isinstance(algo, str) and algo in agents.names() and agents.on_policy(algo)


def load_policy(path: PathLike, run: int = 0, deterministic: bool = True, seed: int = 0) -> RunPolicy:
    """One run of an artifact, or of any run directory, as a callable `RunPolicy`.

    The network is rebuilt from the stored config and sizes (obs_size, action_size);
    the run's stored log_alpha and noise_scale drive Eq. 16's noise. A PPO or TRPO
    run directory has no artifact: its policy is brax's (`mjx_dacer.brax_policy.load`).

    Args:
      path: the artifact file, or a run directory holding ``policy.msgpack`` (or a PPO / TRPO one).
      run: index into the artifact's B runs (the runner's order: grid-major, seeds inner).
      deterministic: True: the chain's a0 (evaluation); False: add Eq. 16's behaviour noise.
      seed: seed of the PRNG key the chain samples with; each call advances it.
    Raises:
      PolicyFileError (a ValueError): see `read_artifact`.
      ValueError: run out of range. Both with a one-line message.
      For a PPO or TRPO run, `brax_policy.load`'s errors.
    """
    if not _is_index(run):
        raise ValueError(f"run must be an integer index into the saved runs, got {run!r}")
    return load_policies(path, [run], deterministic=deterministic, seed=seed)[0]


def _is_index(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def load_policies(path: PathLike, runs: Sequence[int] | None = None, deterministic: bool = True,
                  seed: int = 0) -> list[RunPolicy]:
    """Several runs of `path` (every one by default) as `load_policy` gives each, read in one go: the artifact
    (or a TRPO run's checkpoint) is read once, so every policy comes from the same save, even while the run
    goes on writing newer ones. The same errors as `load_policy`; each policy has its own key (`seed`)."""
    if runs is not None:
        if isinstance(runs, (str, bytes)) or not isinstance(runs, Iterable):  # e.g. a lone index
            raise ValueError(f"runs must be a list of run indices (None: every run), got {runs!r}; "
                             "load_policy(path, run=I) loads one")
        runs = list(runs)
        if not all(map(_is_index, runs)):
            raise ValueError(f"runs must be a list of integer run indices (None: every run), got {runs!r}")
    if on_policy_run(path):
        from mjx_dacer import brax_policy  # brax's training modules: imported only for these runs

        return brax_policy.load_runs(path, runs, deterministic=deterministic, seed=seed)
    body = read_artifact(path)
    num_runs = int(body["num_runs"])
    runs = range(num_runs) if runs is None else runs
    for run in runs:
        if not isinstance(run, (int, np.integer)) or not 0 <= run < num_runs:
            raise ValueError(f"run {run} is out of range: {path} holds {num_runs} run(s), indices 0..{num_runs - 1}")
    agent = make_agent(body["config"], int(body["obs_size"]), int(body["action_size"]))  # sizes as stored
    policies = []
    for run in map(int, runs):
        params = PolicyParams(
            network=jax.tree.map(lambda x: jnp.asarray(x[run]), body["policy_params"]),
            log_alpha=jnp.asarray(body["log_alpha"][run], jnp.float32),
            noise_scale=jnp.asarray(body["noise_scale"][run], jnp.float32),
        )
        policies.append(Policy(
            agent=agent, params=params, config=body["config"], run=run, label=body["labels"][run],
            seed=int(body["seeds"][run]), iteration=int(body["iteration"]), num_runs=num_runs,
            deterministic=deterministic, key_seed=seed,
        ))
    return policies


__all__ = ["FILENAME", "FORMAT", "VERSION", "Policy", "PolicyParams", "RunPolicy", "artifact_path", "load_policies",
           "load_policy", "on_policy_run", "policy_action", "read_artifact", "save_policy"]
