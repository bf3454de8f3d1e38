"""Task names -> environment constructors: `make` and `names`.

``make(name, **overrides)`` builds the task with Gymnasium's defaults,
changed only by ``overrides``: keyword arguments of the task's constructor
(``forward_reward_weight=...``, ``terminate_when_unhealthy=...``) and
``physics="fast" | "faithful"``. Environments hold no mutable state, so one
instance per (name, overrides) is built and then reused: ``make`` is cheap
after the first call, and jitted functions of the same env object are shared.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from typing import Any

from brax.envs.base import Env

from mjx_dacer.envs import physics as physics_lib

# name -> (module, class). Imported lazily: loading a task compiles its model.
_TASKS: dict[str, tuple[str, str]] = {
    "Humanoid-v5": ("mjx_dacer.envs.humanoid", "Humanoid"),
    "Ant-v5": ("mjx_dacer.envs.ant", "Ant"),
    "HalfCheetah-v5": ("mjx_dacer.envs.half_cheetah", "HalfCheetah"),
    "Walker2d-v5": ("mjx_dacer.envs.walker2d", "Walker2d"),
    "Hopper-v5": ("mjx_dacer.envs.hopper", "Hopper"),
    "InvertedDoublePendulum-v5": ("mjx_dacer.envs.inverted_double_pendulum", "InvertedDoublePendulum"),
    "Pusher-v5": ("mjx_dacer.envs.pusher", "Pusher"),
    "Swimmer-v5": ("mjx_dacer.envs.swimmer", "Swimmer"),
    "MultiGoal-v0": ("mjx_dacer.envs.multigoal", "MultiGoal"),
}


def names() -> tuple[str, ...]:
    """All task names, the paper's eight MuJoCo tasks first, then MultiGoal-v0."""
    return tuple(_TASKS)


def task_class(name: str) -> type:
    """The class behind ``name``; raises ValueError for an unknown name."""
    if name not in _TASKS:
        raise ValueError(_unknown("environment", name, names()))
    module, cls = _TASKS[name]
    return getattr(importlib.import_module(module), cls)


def options(name: str) -> dict[str, Any]:
    """The overrides ``make(name, ...)`` accepts, with their defaults."""
    params = inspect.signature(task_class(name).__init__).parameters
    found = {k: p.default for k, p in params.items() if k != "self"}
    found.setdefault("physics", physics_lib.DEFAULT_PROFILE)
    return found


def make(name: str, **overrides: Any) -> Env:
    """Builds (or returns the cached) environment ``name`` with ``overrides``.

    Raises:
      ValueError: unknown ``name`` (the message lists the valid names and the
        closest match), unknown override (naming it and the valid ones), or a
        ``physics`` value other than "fast" / "faithful".
    """
    valid = options(name)
    for key in overrides:
        if key not in valid:
            raise ValueError(f"{name}: " + _unknown("option", key, tuple(valid)))
    physics_lib.validate_profile(overrides.get("physics", physics_lib.DEFAULT_PROFILE))
    if "physics" not in inspect.signature(task_class(name).__init__).parameters:
        overrides.pop("physics", None)  # MultiGoal has no physics engine
        valid.pop("physics")
    # The cache key is the full argument set, so that spelling out a default
    # returns the same instance as leaving it out.
    arguments = {k: _freeze(v) for k, v in {**valid, **overrides}.items()}
    try:
        return _make_cached(name, tuple(sorted(arguments.items())))
    except TypeError:  # an unhashable override value: build without caching
        return task_class(name)(**arguments)


@functools.lru_cache(maxsize=None)
def _make_cached(name: str, frozen: tuple[tuple[str, Any], ...]) -> Env:
    return task_class(name)(**dict(frozen))


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _unknown(kind: str, given: str, valid: tuple[str, ...]) -> str:
    message = f"unknown {kind} {given!r}."
    # Case-insensitive, so that "hopper" suggests "Hopper-v5".
    lowered = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(str(given).lower(), tuple(lowered), n=1, cutoff=0.5)
    if close:
        message += f" Did you mean {lowered[close[0]]!r}?"
    return message + f" Valid: {', '.join(valid)}."
