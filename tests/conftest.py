"""Session-wide fixtures shared by the test suite.

Environments: an MJX compile costs 15-70 s per task on a 2-core CPU, so each
(task, physics profile) is compiled once per session, for one fixed batch
size, and every test reuses it: `compiled_env(name, physics)` returns the
env with jitted, vmapped ``state_from``, ``step`` and ``initial_state``.
Gymnasium's C-MuJoCo environments (the fidelity reference) come from
`gym_env(name)`, one per task.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import types
from typing import Callable

# On a GPU, JAX reserves 75% of its memory when a process first uses it. The CLI tests run
# the CLI in subprocesses while this process holds a backend of its own (policies loaded
# in-process, the compiled environments), so each process allocates only what it needs.
# Set before any backend starts; the subprocesses inherit it.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# `mjx-dacer` turns on a persistent compilation cache in ~/.cache (mjx_dacer.compile_cache); tests that
# call the CLI in this process keep it off, and the ones that test it or need it name their own directory.
os.environ.setdefault("MJX_DACER_COMPILATION_CACHE", "off")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Imported first so that, on a headless Linux machine, MUJOCO_GL is chosen
# before anything imports mujoco (rendering needs that).
import mjx_dacer.envs as envs  # noqa: E402

# Every compiled MJX function in the tests takes this many environments at
# once: one compile per (task, profile), whatever the test.
ENV_BATCH = 32
MUJOCO_TASKS = tuple(n for n in envs.names() if n != "MultiGoal-v0")


@dataclasses.dataclass
class CompiledEnv:
    """An env and its jitted, vmapped (batch ENV_BATCH) pure functions.

    state_from: qpos (B, nq), qvel (B, nv) -> State      (Gymnasium's set_state)
    step: State, action (B, nu) in [-1, 1] -> State
    initial_state: keys (B, 2) -> qpos (B, nq), qvel (B, nv)   (reset distribution)
    """

    env: object
    state_from: Callable
    step: Callable
    initial_state: Callable


_COMPILED_ENVS: dict[tuple[str, str], CompiledEnv] = {}

# Every compiled XLA:CPU program holds memory mappings (about 1000 per MJX program), and a
# process may have at most vm.max_map_count (65530 by default) of them. The whole suite in
# one process outgrows that; the next compile then aborts inside LLVM ("Unable to allocate
# section memory", SIGABRT), which is what once made the suite run in two processes.
# So after each test, past this many mappings, the compiled programs are dropped (and
# recompiled if a later test needs them).
MAX_MAPPINGS = 40_000


def _mappings() -> int:
    try:
        with open(f"/proc/{os.getpid()}/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no such limit to watch
        return 0


@pytest.fixture(autouse=True)
def _release_compiled_programs_when_mappings_run_high():
    yield
    if _mappings() > MAX_MAPPINGS:
        _COMPILED_ENVS.clear()
        jax.clear_caches()
        gc.collect()


@pytest.fixture(scope="session")
def compiled_env() -> Callable[[str, str], CompiledEnv]:
    cache = _COMPILED_ENVS

    def get(name: str, physics: str) -> CompiledEnv:
        if (name, physics) not in cache:
            env = envs.make(name, physics=physics)
            jit = lambda fn: envs.jit(env, jax.vmap(fn))
            cache[name, physics] = CompiledEnv(
                env=env,
                state_from=jit(env.state_from),
                step=jit(env.step),
                initial_state=jit(env.initial_state),
            )
        return cache[name, physics]

    return get


@pytest.fixture(scope="session")
def gym_env() -> Callable[[str], object]:
    """Gymnasium's own environment for a task name, unwrapped (no time limit)."""
    import gymnasium

    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = gymnasium.make(name).unwrapped
        return cache[name]

    return get


@pytest.fixture
def np_rng() -> np.random.Generator:
    return np.random.default_rng(0)


class FakeWandbRun:
    """What a W&B run records here: its `wandb.init` arguments, every `log(data, step)`, and `finish`."""

    def __init__(self, kwargs):
        self.kwargs, self.logged, self.finished = kwargs, [], False

    def log(self, data, step=None):
        self.logged.append((step, dict(data)))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    """A `wandb` module whose `init` returns a `FakeWandbRun` (kept in the module's `runs`): no account, no network."""
    module = types.ModuleType("wandb")
    module.runs = []

    def init(**kwargs):
        run = FakeWandbRun(kwargs)
        module.runs.append(run)
        return run

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module
