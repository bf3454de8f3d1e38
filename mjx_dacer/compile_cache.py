"""JAX's persistent compilation cache, which every `mjx-dacer` command but `bench` turns on.

A run's chunk program takes minutes to build: tracing the physics, the
reverse chain and the GMM fit, then XLA's compile (Hopper-v5 with small
networks: about 15 s and 100 s on a 2-core CPU; `mjx-dacer bench build`). The same config builds the
same program, so `train --resume` after an interruption, a second `eval` of a
run, or the same task trained again can load XLA's result from disk instead
of compiling it again. JAX keys each entry by the program, the jaxlib
version, the backend, the XLA flags and the devices, so a changed program
never loads a stale one; tracing still runs, so only XLA's share is saved.

Where it lives: ``$XDG_CACHE_HOME/mjx_dacer/xla/<machine>`` (``~/.cache``
without XDG_CACHE_HOME), or ``MJX_DACER_COMPILATION_CACHE/<machine>`` where
that variable names a directory; ``MJX_DACER_COMPILATION_CACHE=off`` turns
the cache off. ``<machine>`` names the kind of CPU (its model and
instruction-set flags), because JAX's key does not name the host CPU and
XLA:CPU compiles for the CPU it runs on: a cache shared by different
machines (a home directory on a cluster) would otherwise hand one machine
another's code. A ``JAX_COMPILATION_CACHE_DIR`` the user set wins over all
of this, as it is. A directory that cannot be created leaves the cache off.
Deleting the directory is always safe; entries are a few MB each (Hopper-v5
with small networks: 4 MB) and are not evicted. `mjx-dacer bench` turns the
cache off (`disable`), JAX_COMPILATION_CACHE_DIR or not: its compile times
are cold compiles.

Only programs that took at least a second to compile are stored (JAX's
``jax_persistent_cache_min_compile_time_secs``).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import platform

import jax

VARIABLE = "MJX_DACER_COMPILATION_CACHE"
OFF = ("off", "0", "false", "no", "none")
_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_hits = 0
_listening = False


def machine_tag() -> str:
    """A short name for this kind of CPU: 12 hex digits of the model name and flags (Linux), else the platform."""
    description = f"{platform.system()} {platform.machine()} {platform.processor()}"
    try:
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    wanted = ("model name", "flags", "features", "cpu part")  # x86 and Arm spellings
    seen: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name in wanted and name not in seen:  # the first processor's; all cores of a machine match
            seen[name] = " ".join(sorted(value.split()))
    description += "".join(f"|{k}={v}" for k, v in sorted(seen.items()))
    return hashlib.sha256(description.encode()).hexdigest()[:12]


def default_root() -> pathlib.Path:
    """``$XDG_CACHE_HOME/mjx_dacer/xla`` (``~/.cache`` without XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "mjx_dacer" / "xla"


def enable() -> str | None:
    """Turns the cache on for this process (before its first compile) and returns its directory, or None if off.

    A cache directory already given to JAX (``JAX_COMPILATION_CACHE_DIR`` or
    ``jax.config``) is kept as it is; otherwise ``<root>/<machine_tag()>``,
    the root from ``MJX_DACER_COMPILATION_CACHE`` or `default_root`.
    """
    _listen()
    chosen = jax.config.jax_compilation_cache_dir
    if chosen:
        return str(chosen)
    value = os.environ.get(VARIABLE, "").strip()
    if value.lower() in OFF:
        return None
    path = (pathlib.Path(value).expanduser() if value else default_root()) / machine_tag()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only or unusable: JAX would warn at every write, so compile as if off
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    return str(path)


def disable() -> None:
    """Turns the cache off for this process, whatever directory JAX was given."""
    jax.config.update("jax_enable_compilation_cache", False)


def hits() -> int:
    """How many compiles in this process so far were loaded from the cache (after `enable`)."""
    return _hits


def _listen() -> None:
    global _listening
    if not _listening:
        jax.monitoring.register_event_listener(_count)
        _listening = True


def _count(event: str, **kwargs) -> None:
    global _hits
    if event == _HIT_EVENT:
        _hits += 1
