"""A run directory: what it holds, where each file is, and its config.yaml.

    RUN_DIR/
      config.yaml      the resolved Config, the seeds and the grid (`RunDir.create`; read by `RunDir.open`)
      metrics.csv      one row per evaluation point and run (`sinks.CsvSink`)
      tb/              TensorBoard events, one folder per run (`sinks.TensorBoardSink`)
      curves.png       evaluation return over iterations (`sinks.ReportSink`)
      summary.md       the paper's Table 1 metric per grid point (`sinks.ReportSink`)
      checkpoints/N/   the whole training state after chunk N, atomic (`checkpoint.Checkpointer`)
      policy.msgpack   the policies alone, for `mjx-dacer eval` and `load_policy` (`policy.save_policy`)

A run's entries are (grid point, seed) pairs, described by `RunSpec`; they
are the leading "run" axis of the vmapped program.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
from typing import Mapping

import jax
import jax.numpy as jnp
import yaml

from mjx_dacer.config import Config, ConfigError, HParams, from_dict, to_dict


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Which (grid point, seed) pairs a run contains, in the order of the vmapped axis."""

    grid: tuple[Mapping[str, float], ...]  # HParams overrides per grid point; ({},) for plain training
    seeds: tuple[int, ...]

    @property
    def entries(self) -> list[tuple[int, int]]:
        """(grid index, seed) for each vmapped entry: grid-major, seeds inner."""
        return list(itertools.product(range(len(self.grid)), self.seeds))

    def label(self, g: int) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.grid[g].items()) or "default"

    @property
    def labels(self) -> list[str]:
        """The grid label of each entry."""
        return [self.label(g) for g, _ in self.entries]

    def inputs(self, config: Config) -> tuple[jax.Array, HParams]:
        """PRNG keys (R, 2) and HParams with leading axis R, for the R entries.

        Seed s always gets the key PRNGKey(config.seed + s), so a grid point's
        seed s reproduces the single run with the same seed.
        """
        keys, hps = [], []
        for g, seed in self.entries:
            keys.append(jax.random.PRNGKey(config.seed + seed))
            hps.append(config.replace(**self.grid[g]).hparams())  # validates the swept values too
        return jnp.stack(keys), jax.tree.map(lambda *x: jnp.stack(x), *hps)

    def validate(self, config: Config) -> None:
        """Raises ConfigError if a grid point gives `config` a bad value, or no seeds are given."""
        if not self.seeds or min(self.seeds) < 0:
            raise ConfigError(f"seeds must be a positive count or non-negative seeds, got {list(self.seeds)}")
        for point in self.grid:
            config.replace(**point)


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (see the module docstring)."""

    path: pathlib.Path

    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.csv")
    tensorboard = property(lambda self: self.path / "tb")
    curves = property(lambda self: self.path / "curves.png")
    summary = property(lambda self: self.path / "summary.md")
    checkpoints = property(lambda self: self.path / "checkpoints")
    policy = property(lambda self: self.path / "policy.msgpack")

    @classmethod
    def create(cls, path: str | pathlib.Path, config: Config, spec: RunSpec) -> "RunDir":
        """A new run directory holding config.yaml; `path` must be absent or an empty directory."""
        path = pathlib.Path(path)
        cls.check_new(path)
        path.mkdir(parents=True, exist_ok=True)
        run_dir = cls(path)
        resolved = {**to_dict(config), "seeds": list(spec.seeds), "grid": [dict(g) for g in spec.grid]}
        run_dir.config.write_text(yaml.safe_dump(resolved, sort_keys=False))
        return run_dir

    @staticmethod
    def check_new(path: pathlib.Path) -> None:
        """Raises ConfigError unless `path` is absent or an empty directory (nothing is ever overwritten)."""
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"{path} already exists and is not an empty directory; choose another run directory")

    @classmethod
    def open(cls, path: str | pathlib.Path) -> tuple["RunDir", Config, RunSpec]:
        """An existing run directory, with the config and spec stored in its config.yaml."""
        run_dir = cls(pathlib.Path(path))
        if not run_dir.config.is_file():
            raise ConfigError(f"{path} is not a run directory (no config.yaml); check the path")
        values = yaml.safe_load(run_dir.config.read_text()) or {}
        seeds = tuple(values.pop("seeds", (0,)))
        grid = tuple(dict(g) for g in values.pop("grid", ({},)))
        return run_dir, from_dict(values), RunSpec(grid=grid, seeds=seeds)

    def has_checkpoint(self) -> bool:
        return self.checkpoints.is_dir() and any(p.name.isdigit() for p in self.checkpoints.iterdir())
