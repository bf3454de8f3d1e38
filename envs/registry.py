"""Task names -> environments, options and presets: `make`, `names`, `options`, `preset`.

``make(name, **overrides)`` builds the task with Gymnasium's defaults,
changed only by ``overrides``: fields of the task's ``Options`` dataclass
(``forward_reward_weight=...``, ``terminate_when_unhealthy=...``, and
``physics="fast" | "faithful"`` for the MuJoCo tasks). Environments hold no
mutable state, so one instance per (name, options) is built and then reused:
``make`` is cheap after the first call, and jitted functions of the same env
object are shared. ``preset(name)`` is the task's training config in the
repository's ``configs/`` folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
from typing import Any

from brax.envs.base import Env

from mjx_dacer.envs import physics as physics_lib


@dataclasses.dataclass(frozen=True)
class Task:
    """Where a task's class lives and which preset trains it.

    module, cls: the class, imported lazily (building a task compiles its model).
    preset: the name of its YAML preset, ``configs/<preset>.yaml``; None if it has none.
    """

    module: str
    cls: str
    preset: str | None


_TASKS: dict[str, Task] = {
    "Humanoid-v5": Task("mjx_dacer.envs.humanoid", "Humanoid", "humanoid"),
    "Ant-v5": Task("mjx_dacer.envs.ant", "Ant", "ant"),
    "HalfCheetah-v5": Task("mjx_dacer.envs.half_cheetah", "HalfCheetah", "halfcheetah"),
    "Walker2d-v5": Task("mjx_dacer.envs.walker2d", "Walker2d", "walker2d"),
    "Hopper-v5": Task("mjx_dacer.envs.hopper", "Hopper", "hopper"),
    "InvertedDoublePendulum-v5": Task(
        "mjx_dacer.envs.inverted_double_pendulum", "InvertedDoublePendulum", "inverteddoublependulum"
    ),
    "Pusher-v5": Task("mjx_dacer.envs.pusher", "Pusher", "pusher"),
    "Swimmer-v5": Task("mjx_dacer.envs.swimmer", "Swimmer", "swimmer"),
    "MultiGoal-v0": Task("mjx_dacer.envs.multigoal", "MultiGoal", "multigoal"),
}


def names() -> tuple[str, ...]:
    """All task names, the paper's eight MuJoCo tasks first, then MultiGoal-v0."""
    return tuple(_TASKS)


def preset(name: str) -> str | None:
    """The preset that trains task ``name`` ("Hopper-v5" -> "hopper", i.e. ``configs/hopper.yaml``).

    None for a task without one, and for a name that is no task (`make`
    reports those, with the valid names).
    """
    task = _TASKS.get(name)
    return task.preset if task else None


def task_class(name: str) -> type:
    """The class behind ``name``; raises ValueError for an unknown name."""
    if name not in _TASKS:
        raise ValueError(_unknown("environment", name, names()))
    task = _TASKS[name]
    return getattr(importlib.import_module(task.module), task.cls)


def options(name: str) -> dict[str, Any]:
    """The overrides ``make(name, ...)`` accepts, with their defaults (the task's ``Options``).

    ``physics`` is among them for every task; MultiGoal-v0, which has no
    physics engine, accepts and ignores it.
    """
    found = {field.name: field.default for field in dataclasses.fields(task_class(name).Options)}
    found.setdefault("physics", physics_lib.DEFAULT_PROFILE)
    return found


def make(name: str, **overrides: Any) -> Env:
    """Builds (or returns the cached) environment ``name`` with ``overrides``.

    Raises:
      ValueError: unknown ``name`` (the message lists the valid names and the
        closest match), unknown override (naming it and the valid ones), or a
        ``physics`` value other than "fast" / "faithful".
    """
    cls = task_class(name)
    valid = options(name)
    for key in overrides:
        if key not in valid:
            raise ValueError(f"{name}: " + _unknown("option", key, tuple(valid)))
    physics_lib.validate_profile(overrides.get("physics", physics_lib.DEFAULT_PROFILE))
    if "physics" not in {field.name for field in dataclasses.fields(cls.Options)}:
        overrides.pop("physics", None)  # MultiGoal has no physics engine
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    # The cache key is the whole Options value, so that spelling out a default
    # returns the same instance as leaving it out.
    key = cls.Options(**overrides)
    try:
        hash(key)
    except TypeError:  # an unhashable override value: build without caching
        return cls(**overrides)
    return _make_cached(name, key)


@functools.lru_cache(maxsize=None)
def _make_cached(name: str, options: Any) -> Env:
    return task_class(name)(**{field.name: getattr(options, field.name) for field in dataclasses.fields(options)})


def _unknown(kind: str, given: str, valid: tuple[str, ...]) -> str:
    message = f"unknown {kind} {given!r}."
    # Case-insensitive, so that "hopper" suggests "Hopper-v5".
    lowered = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(str(given).lower(), tuple(lowered), n=1, cutoff=0.5)
    if close:
        message += f" Did you mean {lowered[close[0]]!r}?"
    return message + f" Valid: {', '.join(valid)}."
