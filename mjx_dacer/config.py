"""Typed configuration for DACER runs.

Two kinds of settings live here (see DESIGN.md, "config.py"):

* ``Config``: the whole run description, a frozen dataclass loaded from YAML.
  Fields that fix array shapes or the program's structure (network sizes,
  ``num_envs``, ``diffusion_steps``, ``batch_size``, ``buffer_capacity``, ...)
  are *static*: changing them recompiles the program.
* ``HParams``: the scalar hyperparameters that do not change shapes (learning
  rates, noise scale, reward scale, gamma, tau, target-entropy factor). They
  are pytree leaves, so ``jax.vmap`` over an ``HParams`` batch runs a grid
  search inside one compiled program.

Defaults are DACER_SPEC's values (the authors' code), for a 256-unit task.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import math
import pathlib
import re
import typing
from importlib.resources.abc import Traversable
from typing import Any, Mapping

import jax.numpy as jnp
import yaml
from flax import struct


class ConfigError(ValueError):
    """A configuration problem, with a message that names the field and the fix."""


def error_line(error: Exception) -> str:
    """The one line the CLI prints for `error`: its message's first line (its repr if it has none)."""
    message = str(error)
    return message.splitlines()[0] if message.strip() else repr(error)


@struct.dataclass
class HParams:
    """Shape-free hyperparameters; every leaf may carry leading vmap axes.

    Attributes:
      lr_actor: Adam step size of the noise-prediction network (spec §4: 1e-4).
      lr_critic: Adam step size of both critics (spec §4: 1e-4).
      lr_alpha: Adam step size of log_alpha (spec §2: 3e-2).
      noise_scale: lambda of Eq. 16, the behaviour noise is lambda * alpha * N(0, I).
      reward_scale: the factor on r in the critic target (spec §3: 0.2).
      gamma: discount (0.99).
      tau: Polyak rate of the target critics (0.005).
      target_entropy_factor: H_target = -target_entropy_factor * dim(A) (0.9).
    """

    lr_actor: jnp.ndarray
    lr_critic: jnp.ndarray
    lr_alpha: jnp.ndarray
    noise_scale: jnp.ndarray
    reward_scale: jnp.ndarray
    gamma: jnp.ndarray
    tau: jnp.ndarray
    target_entropy_factor: jnp.ndarray


HPARAM_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(HParams))

ACTIVATIONS = ("mish", "gelu", "relu", "silu", "tanh", "elu")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one run needs. Key names are part of the public interface."""

    # Task and data collection (spec §5).
    env: str = "Hopper-v5"
    physics: str = "fast"
    num_envs: int = 20
    # Iterations after the warm-up (spec §5: the reference's 1.5M updates exclude it).
    total_iterations: int = 1_500_000
    updates_per_iteration: int = 1
    warmup_steps: int = 30_000
    buffer_capacity: int = 1_000_000
    batch_size: int = 256
    # Evaluation (spec §5): deterministic episodes at the end of the warm-up and every
    # eval_interval iterations after it.
    eval_interval: int = 15_000
    eval_episodes: int = 10
    # Networks (spec §1, §3).
    hidden_sizes: tuple[int, ...] = (256, 256, 256)
    critic_hidden_sizes: tuple[int, ...] = (256, 256, 256)
    activation: str = "mish"
    critic_activation: str = "mish"
    diffusion_steps: int = 20
    # Entropy regulator (spec §2).
    noise_scale: float = 0.1
    initial_alpha: float = 3.0
    alpha_update_interval: int = 10_000
    entropy_samples: int = 200
    gmm_components: int = 3
    target_entropy_factor: float = 0.9
    # Optimisation (spec §3, §4).
    lr_actor: float = 1e-4
    lr_critic: float = 1e-4
    lr_alpha: float = 3e-2
    reward_scale: float = 0.2
    gamma: float = 0.99
    tau: float = 0.005
    policy_delay: int = 2
    # Bookkeeping.
    checkpoint_interval: int = 1
    seed: int = 0

    @property
    def warmup_iterations(self) -> int:
        """Iterations of uniform random actions before the first update: ceil(warmup_steps / num_envs).

        An iteration acts randomly while the buffer holds fewer than
        `warmup_steps` transitions, and each adds `num_envs` of them. A run is
        `warmup_iterations + total_iterations` iterations long.
        """
        return -(-self.warmup_steps // self.num_envs)

    def hparams(self) -> HParams:
        """The traced hyperparameters of this config, as float32 scalars."""
        return HParams(**{k: jnp.float32(getattr(self, k)) for k in HPARAM_FIELDS})

    def replace(self, **changes: Any) -> "Config":
        """A validated copy with ``changes`` applied (values are coerced like YAML input)."""
        return from_dict({**to_dict(self), **changes})


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)

# (field, lower bound, inclusive?) ; upper bounds are checked separately below.
_POSITIVE_INTS = (
    "num_envs", "total_iterations", "updates_per_iteration", "buffer_capacity",
    "batch_size", "eval_interval", "eval_episodes", "diffusion_steps",
    "alpha_update_interval", "entropy_samples", "gmm_components", "policy_delay",
    "checkpoint_interval",
)
_POSITIVE_FLOATS = ("lr_actor", "lr_critic", "lr_alpha", "reward_scale", "initial_alpha")


def _coerce(name: str, value: Any) -> Any:
    """Convert a YAML or command-line value to the declared type of ``name``."""
    hint = _HINTS[name]
    try:
        if hint is int:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, str):
                value = value.replace("_", "")
                value = float(value) if any(c in value for c in ".eE") else int(value)
            if isinstance(value, float):
                if not value.is_integer():
                    raise TypeError
                value = int(value)
            if not isinstance(value, int):
                raise TypeError
            return value
        if hint is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if typing.get_origin(hint) is tuple:
            if isinstance(value, str):
                value = [v for v in value.strip("[]() ").split(",") if v.strip()]
            if isinstance(value, int) and not isinstance(value, bool):
                value = [value]
            return tuple(_coerce_int(v) for v in value)
    except (TypeError, ValueError):
        pass
    else:
        raise AssertionError(f"unhandled type {hint} for {name}")
    expected = {int: "an integer", float: "a number", str: "a string"}.get(
        hint, "a list of integers, e.g. [256, 256, 256]"
    )
    raise ConfigError(f"config key '{name}' must be {expected}, got {value!r}")


def _coerce_int(v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, str):
        v = int(v.strip())
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int):
        raise TypeError
    return v


def validate(cfg: Config) -> Config:
    """Range checks; raises ConfigError naming the field and the fix."""
    for name in _POSITIVE_INTS:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"config key '{name}' must be >= 1, got {getattr(cfg, name)}")
    for name in _POSITIVE_FLOATS:
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(f"config key '{name}' must be a positive number, got {v}")
    for name in ("hidden_sizes", "critic_hidden_sizes"):
        sizes = getattr(cfg, name)
        if not sizes or any(s < 1 for s in sizes):
            raise ConfigError(f"config key '{name}' must be a non-empty list of positive widths, got {list(sizes)}")
    for name in ("activation", "critic_activation"):
        if getattr(cfg, name) not in ACTIVATIONS:
            raise ConfigError(f"config key '{name}' must be one of {', '.join(ACTIVATIONS)}, got {getattr(cfg, name)!r}")
    if cfg.physics not in ("fast", "faithful"):
        raise ConfigError(f"config key 'physics' must be 'fast' or 'faithful', got {cfg.physics!r}")
    if not (0.0 <= cfg.gamma <= 1.0):
        raise ConfigError(f"config key 'gamma' must lie in [0, 1], got {cfg.gamma}")
    if not (0.0 < cfg.tau <= 1.0):
        raise ConfigError(f"config key 'tau' must lie in (0, 1], got {cfg.tau}")
    if not (math.isfinite(cfg.noise_scale) and cfg.noise_scale >= 0):
        raise ConfigError(f"config key 'noise_scale' must be >= 0, got {cfg.noise_scale}")
    if not math.isfinite(cfg.target_entropy_factor):
        raise ConfigError("config key 'target_entropy_factor' must be finite")
    if cfg.warmup_steps < 0:
        raise ConfigError(f"config key 'warmup_steps' must be >= 0, got {cfg.warmup_steps}")
    if cfg.batch_size > cfg.buffer_capacity:
        raise ConfigError(
            f"batch_size ({cfg.batch_size}) is larger than buffer_capacity ({cfg.buffer_capacity}); "
            "raise buffer_capacity or lower batch_size"
        )
    if cfg.warmup_steps > cfg.buffer_capacity:
        raise ConfigError(
            f"warmup_steps ({cfg.warmup_steps}) is larger than buffer_capacity ({cfg.buffer_capacity}); "
            "the buffer could never hold the warm-up data: lower warmup_steps or raise buffer_capacity"
        )
    if cfg.num_envs > cfg.buffer_capacity:
        raise ConfigError(
            f"num_envs ({cfg.num_envs}) is larger than buffer_capacity ({cfg.buffer_capacity}); raise buffer_capacity"
        )
    if cfg.seed < 0:
        raise ConfigError(f"config key 'seed' must be >= 0, got {cfg.seed}")
    return cfg


def unknown_key_error(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, _FIELDS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}; valid keys: {', '.join(_FIELDS)}")


def from_dict(values: Mapping[str, Any], base: Config | None = None) -> Config:
    """Build a validated Config from ``values`` layered over ``base`` (default: Config())."""
    kwargs = to_dict(base or Config())
    for key, value in values.items():
        if key not in _FIELDS:
            raise unknown_key_error(key)
        kwargs[key] = _coerce(key, value)
    return validate(Config(**kwargs))


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain-Python view (tuples become lists) suitable for YAML."""
    out = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def parse_overrides(pairs: typing.Iterable[str]) -> dict[str, Any]:
    """``["lr_actor=3e-4", "hidden_sizes=64,64"]`` -> dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override '{pair}' is not of the form key=value")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if key not in _FIELDS:
            raise unknown_key_error(key)
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        out[key] = value
    return out


def load_config(path: str | pathlib.Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Load a YAML preset (a path, or a name from ``configs/``) and apply overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        file = resolve_preset(path)
        try:
            loaded = yaml.safe_load(file.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {file} is not valid YAML: {str(e).splitlines()[0]}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file} must hold a mapping of key: value pairs")
        values.update(loaded)
    values.update(overrides or {})
    return from_dict(values)


def preset_dir() -> Traversable:
    """The folder of the YAML presets, wherever the package was loaded from.

    The presets live in the repository's top-level ``configs/`` (the product
    layout). A wheel ships them as package data in ``mjx_dacer/configs/``
    (pyproject.toml), and in a regular install that is the only copy. An
    editable install or the source tree has no such folder; there the
    repository's ``configs/`` sits next to the package folder.
    """
    shipped = importlib.resources.files(__package__) / "configs"
    if shipped.is_dir():
        return shipped
    return pathlib.Path(__file__).resolve().parent.parent / "configs"


CONFIG_DIR = preset_dir()


def preset_names() -> list[str]:
    """The names ``load_config`` accepts besides paths, e.g. "hopper", "quickstart"."""
    if not CONFIG_DIR.is_dir():
        return []
    return sorted(p.name.removesuffix(".yaml") for p in CONFIG_DIR.iterdir() if p.name.endswith(".yaml"))


def resolve_preset(path: str | pathlib.Path) -> pathlib.Path | Traversable:
    """A YAML path as given, or the preset of that name in ``configs/``."""
    p = pathlib.Path(path)
    if p.is_file():
        return p
    candidate = CONFIG_DIR / f"{p.name.removesuffix('.yaml')}.yaml"
    if candidate.is_file():
        return candidate
    names = preset_names()
    close = difflib.get_close_matches(p.stem, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"config '{path}' is neither a file nor a preset{hint}; presets: {', '.join(names)}")


def preset_for_env(env: str) -> str | None:
    """The preset that carries a task's settings (Hopper-v5 -> "hopper", MultiGoal-v0 -> "multigoal"), or None."""
    name = re.sub(r"-v\d+$", "", env).replace("-", "").lower()
    if name not in preset_names():
        return None
    preset = yaml.safe_load(resolve_preset(name).read_text()) or {}
    return name if preset.get("env") == env else None  # Hopper-v4 is not the Hopper-v5 preset


__all__ = [
    "ACTIVATIONS", "Config", "ConfigError", "HPARAM_FIELDS", "HParams", "from_dict",
    "load_config", "parse_overrides", "preset_for_env", "preset_names", "resolve_preset", "to_dict", "validate",
]
