"""Typed configuration for DACER runs: one schema, every field declared once.

`Config` is the whole run description, a frozen dataclass loaded from YAML.
Each field is declared once, with its default (DACER_SPEC's values, the
authors' code, for a 256-unit task), a one-line doc, a range check and its
kind (see DESIGN.md, "config.py"):

* static: fixes array shapes or the program's structure (network sizes,
  `num_envs`, `diffusion_steps`, `batch_size`, `buffer_capacity`, ...) or is
  read on the host only (`seed`, `checkpoint_interval`); changing it recompiles.
* traced: a scalar that changes no shape (learning rates, noise scale,
  reward scale, gamma, tau, target-entropy factor). The traced fields make
  up `HParams`, whose leaves may carry vmap axes, so `jax.vmap` over an
  `HParams` batch runs a grid search inside one compiled program.

Everything else is derived from the declarations: `HParams`, the type
coercion of YAML and command-line values, the range checks and their messages.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import math
import pathlib
import typing
from importlib.resources.abc import Traversable
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import yaml
from flax import struct


class ConfigError(ValueError):
    """A configuration problem, with a message that names the field and the fix."""


def error_line(error: Exception) -> str:
    """The one line the CLI prints for `error`: its message's first line (its repr if it has none)."""
    message = str(error)
    return message.splitlines()[0] if message.strip() else repr(error)


# ----------------------------------------------------------------- range checks
# A check returns what is wrong with a value ("must be >= 1"), or None.
Check = Callable[[Any], "str | None"]


# The largest whole-number setting: the device counts iterations, steps and seeds in int32.
INT_MAX = 2**31 - 1


def at_least(low: float) -> Check:
    def check(v):
        if isinstance(v, int) and v > INT_MAX:
            return f"must be <= {INT_MAX} (counted in int32 on the device)"
        if not (math.isfinite(v) and v >= low):
            return f"must be >= {low}" if isinstance(v, int) else f"must be a finite number >= {low:g}"
        return None
    return check


def positive(v) -> str | None:
    return None if math.isfinite(v) and v > 0 else "must be a positive number"


def finite(v) -> str | None:
    return None if math.isfinite(v) else "must be a finite number"


def within(low: float, high: float, low_open: bool = False) -> Check:
    def check(v):
        inside = (low < v if low_open else low <= v) and v <= high
        return None if inside else f"must lie in {'(' if low_open else '['}{low:g}, {high:g}]"
    return check


def one_of(choices: Callable[[], tuple[str, ...]]) -> Check:
    """The choices come from the module that owns them, imported on first use (it pulls in flax or MuJoCo)."""
    def check(v):
        return None if v in choices() else f"must be one of {', '.join(choices())}"
    return check


def _activations() -> tuple[str, ...]:
    from mjx_dacer.networks import ACTIVATION_FNS

    return tuple(ACTIVATION_FNS)


def _algorithms() -> tuple[str, ...]:
    from mjx_dacer.agents import names

    return names()


def _physics_profiles() -> tuple[str, ...]:
    from mjx_dacer.envs.physics import PROFILES

    return PROFILES


def widths(v) -> str | None:
    return None if v and all(s >= 1 for s in v) else "must be a non-empty list of positive widths"


def setting(default: Any, doc: str, check: Check | None = None, *, traced: bool = False) -> Any:
    """A Config field: its default, a one-line doc, a range check, static (default) or traced."""
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check, "traced": traced})


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one run needs. Key names are part of the public interface."""

    algo: str = setting("dacer", "the algorithm (mjx_dacer.agents.names())", one_of(_algorithms))
    # Task and data collection (spec §5).
    env: str = setting("Hopper-v5", "task name (mjx_dacer.envs.names())")
    physics: str = setting("fast", "MJX physics profile (envs/physics.py)", one_of(_physics_profiles))
    num_envs: int = setting(20, "environments stepped per iteration", at_least(1))
    total_iterations: int = setting(
        1_500_000, "iterations after the warm-up (as the reference counts its 1.5M updates)", at_least(1))
    updates_per_iteration: int = setting(1, "gradient updates per iteration", at_least(1))
    warmup_steps: int = setting(30_000, "uniform random transitions before the first update", at_least(0))
    buffer_capacity: int = setting(1_000_000, "replay buffer size in transitions, per run", at_least(1))
    batch_size: int = setting(256, "transitions per update", at_least(1))
    # Evaluation (spec §5): deterministic episodes at the end of the warm-up and every
    # eval_interval iterations after it.
    eval_interval: int = setting(15_000, "iterations between evaluations (one chunk)", at_least(1))
    eval_episodes: int = setting(10, "deterministic episodes per evaluation", at_least(1))
    # Networks (spec §1, §3).
    hidden_sizes: tuple[int, ...] = setting((256, 256, 256), "noise network widths", widths)
    critic_hidden_sizes: tuple[int, ...] = setting((256, 256, 256), "critic widths", widths)
    activation: str = setting("mish", "noise network activation", one_of(_activations))
    critic_activation: str = setting("mish", "critic activation", one_of(_activations))
    diffusion_steps: int = setting(20, "T, steps of the reverse chain (Eq. 7-9)", at_least(1))
    chain_unroll: int = setting(
        1, "reverse-chain steps per loop iteration of the compiled chain (1: a loop of T steps, T: no loop); "
           "speed only, the same actions", at_least(1))
    fuse_chains: bool = setting(
        False, "in an update that trains the actor, one reverse chain over s and s' gives both its actions and the "
               "critics' target actions a' (2N states, T steps) instead of two chains of N; speed only, the same "
               "actions")
    # Entropy regulator (spec §2).
    noise_scale: float = setting(0.1, "lambda of Eq. 16: behaviour noise is lambda * alpha * N(0, I)",
                                 at_least(0.0), traced=True)
    noise_decay: float = setting(
        0.0, "linear decay of lambda over the run: lambda_t = noise_scale * (1 - noise_decay * t / total updates)",
        within(0.0, 1.0), traced=True)
    initial_alpha: float = setting(3.0, "alpha before the first update", positive)
    alpha_update_interval: int = setting(10_000, "updates between entropy estimates (Eq. 12-15)", at_least(1))
    entropy_samples: int = setting(200, "M, actions per state in the entropy estimate", at_least(1))
    gmm_components: int = setting(3, "K, mixture components of the entropy estimate", at_least(1))
    target_entropy_factor: float = setting(0.9, "H_target = -target_entropy_factor * dim(A)", finite, traced=True)
    # Optimisation (spec §3, §4).
    lr_actor: float = setting(1e-4, "Adam step size of the noise network", positive, traced=True)
    lr_critic: float = setting(1e-4, "Adam step size of both critics", positive, traced=True)
    lr_alpha: float = setting(3e-2, "Adam step size of log_alpha (0 holds alpha at initial_alpha)", at_least(0.0),
                              traced=True)
    reward_scale: float = setting(0.2, "factor on r in the critic target", positive, traced=True)
    gamma: float = setting(0.99, "discount", within(0.0, 1.0), traced=True)
    tau: float = setting(0.005, "Polyak rate of the target critics", within(0.0, 1.0, low_open=True), traced=True)
    policy_delay: int = setting(2, "critic updates per actor and target update", at_least(1))
    # Bookkeeping (host side).
    checkpoint_interval: int = setting(1, "chunks between checkpoints", at_least(1))
    seed: int = setting(0, "seed s of a run uses PRNGKey(seed + s)", at_least(0))

    @property
    def warmup_iterations(self) -> int:
        """Iterations of uniform random actions before the first update: ceil(warmup_steps / num_envs).

        An iteration acts randomly while the buffer holds fewer than
        `warmup_steps` transitions, and each adds `num_envs` of them. A run is
        `warmup_iterations + total_iterations` iterations long.
        """
        return -(-self.warmup_steps // self.num_envs)

    def hparams(self) -> "HParams":
        """The traced fields of this config, as float32 scalars."""
        return HParams(**{k: jnp.float32(getattr(self, k)) for k in HPARAM_FIELDS})

    def replace(self, **changes: Any) -> "Config":
        """A validated copy with ``changes`` applied (values are coerced like YAML input)."""
        return from_dict({**to_dict(self), **changes})


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)
HPARAM_FIELDS: tuple[str, ...] = tuple(name for name, f in _FIELDS.items() if f.metadata["traced"])
STATIC_FIELDS: tuple[str, ...] = tuple(name for name in _FIELDS if name not in HPARAM_FIELDS)


def _make_hparams() -> type:
    doc = "\n".join(f"  {k}: {_FIELDS[k].metadata['doc']}." for k in HPARAM_FIELDS)
    namespace = {
        "__annotations__": {k: jax.Array for k in HPARAM_FIELDS},
        "__module__": __name__,
        "__qualname__": "HParams",
        "__doc__": f"The traced fields of Config; every leaf may carry leading vmap axes.\n\nAttributes:\n{doc}\n",
    }
    return struct.dataclass(type("HParams", (), namespace))


HParams = _make_hparams()


# --------------------------------------------------------------------- coercion
def _to_int(v: Any) -> int:
    if isinstance(v, str):
        v = v.strip().replace("_", "")
        v = float(v) if any(c in v for c in ".eE") else int(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError
    return v


def _to_float(v: Any) -> float:
    if isinstance(v, bool):
        raise TypeError
    return float(v)


def _to_bool(v: Any) -> bool:
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    if not isinstance(v, bool):
        raise TypeError
    return v


def _to_str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError
    return v


def _to_ints(v: Any) -> tuple[int, ...]:
    if isinstance(v, str):
        v = [x for x in v.strip("[]() ").split(",") if x.strip()]
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    return tuple(_to_int(x) for x in v)


# Declared type -> (parser, what the error says it expects).
_PARSERS: dict[Any, tuple[Callable[[Any], Any], str]] = {
    bool: (_to_bool, "true or false"),
    int: (_to_int, "an integer"),
    float: (_to_float, "a number"),
    str: (_to_str, "a string"),
    tuple[int, ...]: (_to_ints, "a list of integers, e.g. [256, 256, 256]"),
}


def _coerce(name: str, value: Any) -> Any:
    """Convert a YAML or command-line value to the declared type of ``name``."""
    parse, expected = _PARSERS[_HINTS[name]]
    try:
        return parse(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{name}' must be {expected}, got {value!r}") from None


# The most evaluation points (chunks, each a host round trip and a metrics.csv row per run) a run may have.
MAX_EVALUATIONS = 1_000_000


def validate(cfg: Config) -> Config:
    """Each field's declared range check, then the checks across fields; raises ConfigError naming the field."""
    for name, f in _FIELDS.items():
        value = getattr(cfg, name)
        problem = f.metadata["check"] and f.metadata["check"](value)
        if problem:
            shown = list(value) if isinstance(value, tuple) else value
            raise ConfigError(f"config key '{name}' {problem}, got {shown!r}")
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
    if cfg.entropy_samples < cfg.gmm_components:
        raise ConfigError(
            f"entropy_samples ({cfg.entropy_samples}) is smaller than gmm_components ({cfg.gmm_components}): the "
            "EM fit of the entropy estimate (Eq. 13-15) needs a sample per component; raise entropy_samples"
        )
    if cfg.num_envs > cfg.buffer_capacity:
        raise ConfigError(
            f"num_envs ({cfg.num_envs}) is larger than buffer_capacity ({cfg.buffer_capacity}); raise buffer_capacity"
        )
    if cfg.warmup_iterations + cfg.total_iterations > INT_MAX:
        raise ConfigError(f"the warm-up's {cfg.warmup_iterations} iterations and total_iterations "
                          f"({cfg.total_iterations}) exceed {INT_MAX}, the most the device's int32 counter holds")
    if cfg.total_iterations // cfg.eval_interval > MAX_EVALUATIONS:
        raise ConfigError(f"total_iterations ({cfg.total_iterations}) / eval_interval ({cfg.eval_interval}) is "
                          f"more than {MAX_EVALUATIONS:,} evaluations (chunks) per run; raise eval_interval")
    return cfg


def describe() -> str:
    """Every config key with its kind, default and doc, one per line (the epilog of `mjx-dacer train --help`)."""
    lines = []
    for name, f in _FIELDS.items():
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        kind = "traced" if f.metadata["traced"] else "static"
        lines.append(f"{name} ({kind}, default {default}): {f.metadata['doc']}")
    return "\n".join(lines)


def check_sweepable(key: Any, what: str = "grid key", algo: str | None = None) -> None:
    """Raises ConfigError unless `key` is a traced field (`HParams`), the only kind one program can sweep,
    that `algo` (if given) reads."""
    from mjx_dacer import agents

    unused = agents.unused_hparams(algo) if algo else frozenset()
    sweepable = ", ".join(k for k in HPARAM_FIELDS if k not in unused)
    if key not in HPARAM_FIELDS:
        raise ConfigError(f"{what} '{key}' cannot be swept in one program (it changes shapes or is not a "
                          f"hyperparameter); sweepable keys: {sweepable}")
    if key in unused:
        raise ConfigError(f"{what} '{key}': {algo} does not read it, so every grid point would train the same "
                          f"run; keys {algo} can sweep: {sweepable}")


def unknown_key_error(key: Any) -> ConfigError:
    key = str(key)  # a YAML key can be a number
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


def split_assignment(text: str, what: str, form: str = "key=value") -> tuple[str, str]:
    """"key=value" -> ("key", "value"); raises ConfigError naming `what` ("override", "--grid") otherwise."""
    if "=" not in text:
        raise ConfigError(f"{what} '{text}' is not of the form {form}")
    key, raw = text.split("=", 1)
    return key.strip(), raw


def parse_overrides(pairs: typing.Iterable[str]) -> dict[str, Any]:
    """``["lr_actor=3e-4", "hidden_sizes=64,64"]`` -> dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, raw = split_assignment(pair, "override")
        if key not in _FIELDS:
            raise unknown_key_error(key)
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        out[key] = value
    return out


RUN_DIR_KEYS = ("seeds", "grid", "created")  # what a run directory's config.yaml holds beside the Config


def yaml_problem(error: yaml.YAMLError) -> str:
    """One line: what the parser found and where (1-based line and column, as editors count)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return problem if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that gives one key twice (PyYAML keeps the last silently,
    so a preset edited to `lr_actor: 1e-4` above an old `lr_actor: 3e-4` would train with the old value)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # e.g. a list as a key: the mapping's own construction reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_config(path: str | pathlib.Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Load a YAML preset (a path, or a name from ``configs/``, or a run's config.yaml) and apply overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        file = resolve_preset(path)
        try:
            loaded = yaml.load(file.read_text(), Loader=_UniqueKeyLoader)
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {file} is not valid YAML: {yaml_problem(e)}") from None
        except (OSError, UnicodeDecodeError) as e:  # a folder, unreadable, or not text
            raise ConfigError(f"config file {file} cannot be read as text ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file} must hold a mapping of key: value pairs")
        # A run directory's config.yaml works as a preset: its run keys (seeds, grid, created) are the run's.
        values.update({k: v for k, v in loaded.items() if k not in RUN_DIR_KEYS})
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


__all__ = [
    "Config", "ConfigError", "HPARAM_FIELDS", "HParams", "STATIC_FIELDS", "describe", "from_dict",
    "load_config", "parse_overrides", "preset_names", "resolve_preset", "to_dict", "validate",
]
