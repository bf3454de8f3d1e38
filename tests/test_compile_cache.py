"""The persistent compilation cache that `mjx-dacer` turns on (mjx_dacer.compile_cache).

Where it goes is checked in this process; what it does is checked through the
real CLI: a second identical run loads the chunk program from the cache, says
so, and gives the same numbers, and `bench` leaves the cache alone.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import jax
import pytest

from mjx_dacer import compile_cache

TINY = [
    "total_iterations=2", "eval_interval=2", "warmup_steps=20", "num_envs=10", "buffer_capacity=100",
    "batch_size=8", "eval_episodes=2", "hidden_sizes=8,8", "critic_hidden_sizes=8,8", "diffusion_steps=2",
    "entropy_samples=6", "alpha_update_interval=2",
]
CACHED = "loaded from the compilation cache"


@pytest.fixture
def jax_cache_dir():
    """Restores JAX's cache settings after a test that changes them."""
    saved = jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache
    jax.config.update("jax_compilation_cache_dir", None)
    yield
    jax.config.update("jax_compilation_cache_dir", saved[0])
    jax.config.update("jax_enable_compilation_cache", saved[1])


def test_machine_tag_is_stable_and_short():
    tag = compile_cache.machine_tag()
    assert tag == compile_cache.machine_tag() and len(tag) == 12 and int(tag, 16) >= 0


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false", "none"])
def test_off_leaves_jax_without_a_cache(value, monkeypatch, jax_cache_dir):
    monkeypatch.setenv(compile_cache.VARIABLE, value)
    assert compile_cache.enable() is None and jax.config.jax_compilation_cache_dir is None


def test_a_named_root_gets_one_directory_per_kind_of_machine(tmp_path, monkeypatch, jax_cache_dir):
    monkeypatch.setenv(compile_cache.VARIABLE, str(tmp_path / "cache"))
    path = compile_cache.enable()
    assert path == str(tmp_path / "cache" / compile_cache.machine_tag()) == jax.config.jax_compilation_cache_dir
    assert pathlib.Path(path).is_dir()


def test_the_default_root_follows_xdg_cache_home(tmp_path, monkeypatch, jax_cache_dir):
    monkeypatch.delenv(compile_cache.VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.enable() == str(tmp_path / "mjx_dacer" / "xla" / compile_cache.machine_tag())


def test_a_directory_jax_was_given_wins(tmp_path, monkeypatch, jax_cache_dir):
    monkeypatch.setenv(compile_cache.VARIABLE, str(tmp_path / "ours"))
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))
    assert compile_cache.enable() == str(tmp_path / "theirs") and not (tmp_path / "ours").exists()


def test_an_unusable_directory_leaves_the_cache_off(tmp_path, monkeypatch, jax_cache_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(compile_cache.VARIABLE, str(blocker))
    assert compile_cache.enable() is None and jax.config.jax_compilation_cache_dir is None


def cli(cache: pathlib.Path, *args):
    env = {**os.environ, compile_cache.VARIABLE: str(cache)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return subprocess.run([sys.executable, "-m", "mjx_dacer.cli", *args], capture_output=True, text=True,
                          timeout=900, env=env)


def test_a_second_identical_run_loads_its_program_and_gives_the_same_numbers(tmp_path):
    cache = tmp_path / "cache"
    sets = [a for kv in TINY for a in ("--set", kv)]
    first = cli(cache, "train", "--config", "multigoal", *sets, "--out", str(tmp_path / "first"))
    assert first.returncode == 0, first.stderr
    assert "compiled the chunk program" in first.stdout and CACHED not in first.stdout
    entries = list((cache / compile_cache.machine_tag()).glob("*-cache"))
    assert any(e.name.startswith("jit_run_chunk") for e in entries), entries

    second = cli(cache, "train", "--config", "multigoal", *sets, "--out", str(tmp_path / "second"))
    assert second.returncode == 0, second.stderr
    line = next(x for x in second.stdout.splitlines() if x.startswith("compiled the chunk program"))
    assert line.endswith(CACHED), line

    # metrics.csv has no wall-clock columns (timing.csv has them): the same program, the same numbers
    assert (tmp_path / "first" / "metrics.csv").read_text() == (tmp_path / "second" / "metrics.csv").read_text()


def test_bench_compiles_cold_even_with_a_jax_cache_directory(tmp_path):
    cache = tmp_path / "jax-cache"
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    out = subprocess.run([sys.executable, "-m", "mjx_dacer.cli", "bench", "gmm", "--dims", "2", "--states", "4",
                          "--samples", "20", "--repeats", "1", "--no-sklearn"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr
    assert not cache.exists() or not any(cache.iterdir())
