"""A run directory: what it holds, where each file is, and its config.yaml.

    RUN_DIR/
      config.yaml      the resolved Config, the seeds, the grid and `created` (`RunDir.create`; read by
                       `RunDir.open`; rewritten by a resume that makes the run longer)
      metrics.csv      one row per evaluation point and run (`sinks.CsvSink`)
      timing.csv       the wall clock at each chunk's end, compiles, sessions (`sinks.TIMING_COLUMNS`)
      tb/              TensorBoard events, one folder per run (`sinks.TensorBoardSink`)
      curves.png       evaluation return over iterations (`sinks.ReportSink`)
      summary.md       the paper's Table 1 metric per grid point and the wall clock (`sinks.ReportSink`)
      checkpoints/N/   the whole training state after chunk N, atomic (`checkpoint.Checkpointer`)
      policy.msgpack   the policies alone, for `mjx-dacer eval` and `load_policy` (`policy.save_policy`)

A run's entries are (grid point, seed) pairs, described by `RunSpec`; they
are the leading "run" axis of the vmapped program.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import pathlib
from typing import Mapping

import jax
import jax.numpy as jnp
import yaml

from mjx_dacer.config import RUN_DIR_KEYS, Config, ConfigError, HParams, check_sweepable, from_dict, to_dict


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
        """Raises ConfigError for a grid point that is not a mapping of sweepable keys (`HParams`: anything
        else would be recorded but not trained) or gives `config` a bad value, and for seeds that are not
        distinct non-negative integers (a seed twice would train the same run twice)."""
        seeds = list(self.seeds)
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise ConfigError(f"seeds must be a count >= 1 or a list of non-negative integer seeds, got {seeds}")
        if len(set(seeds)) < len(seeds):
            raise ConfigError(f"seeds must be distinct (a seed twice trains the same run twice), got {seeds}")
        for point in self.grid:
            if not isinstance(point, Mapping):
                raise ConfigError(f"each grid point must be a mapping of key to value, got {point!r}")
            for key in point:
                check_sweepable(key, algo=config.algo)
            config.replace(**point)


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (see the module docstring)."""

    path: pathlib.Path

    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.csv")
    timing = property(lambda self: self.path / "timing.csv")
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
        run_dir.write_config(config, spec)
        return run_dir

    def write_config(self, config: Config, spec: RunSpec) -> None:
        """config.yaml: the resolved config, the seeds, the grid and when the run was created.

        Atomic, since a resume that makes the run longer rewrites it; that keeps `created` (the run's
        identity, e.g. for its W&B run ids) and leaves an unchanged file as it is.
        """
        from mjx_dacer.artifact_io import write_atomically

        created = self.created() or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        resolved = {**to_dict(config), "seeds": list(spec.seeds), "grid": [dict(g) for g in spec.grid],
                    "created": created}
        text = yaml.safe_dump(resolved, sort_keys=False)
        if not self.config.is_file() or self.config.read_text() != text:
            write_atomically(self.config, text.encode())

    def created(self) -> str | None:
        """config.yaml's `created` stamp (UTC, ISO 8601); None without one (or without config.yaml)."""
        try:
            values = yaml.safe_load(self.config.read_text())
        except (OSError, yaml.YAMLError):
            return None
        stamp = values.get("created") if isinstance(values, dict) else None
        return str(stamp) if stamp is not None else None

    @staticmethod
    def check_new(path: pathlib.Path) -> None:
        """Raises ConfigError unless `path` is absent or an empty directory (nothing is ever overwritten)."""
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"{path} already exists and is not an empty directory; choose another run directory")

    def require(self, hint: str) -> None:
        """Raises ConfigError, saying what `path` is instead and ending with `hint`, unless it holds config.yaml."""
        if self.config.is_file():
            return
        found = ("a file, not a directory" if self.path.is_file() else "no config.yaml" if self.path.is_dir()
                 else "no such directory")
        raise ConfigError(f"{self.path} is not a run directory ({found}); {hint}")

    @classmethod
    def open(cls, path: str | pathlib.Path) -> tuple["RunDir", Config, RunSpec]:
        """An existing run directory, with the config and spec stored in its config.yaml."""
        run_dir = cls(pathlib.Path(path))
        run_dir.require("check the path")
        damaged = f"{run_dir.config} is damaged"
        try:
            values = yaml.safe_load(run_dir.config.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise ConfigError(f"{damaged}: it does not read as YAML ({type(e).__name__})") from None
        try:
            seeds = tuple(int(s) for s in values.get("seeds", (0,)))
            grid = tuple(dict(g) for g in values.get("grid", ({},)))
        except (AttributeError, TypeError, ValueError):  # not a mapping, or seeds / grid of the wrong shape
            raise ConfigError(f"{damaged}: it does not hold a run's config, seeds and grid") from None
        config = from_dict({k: v for k, v in values.items() if k not in RUN_DIR_KEYS})
        return run_dir, config, RunSpec(grid=grid, seeds=seeds)

    def checkpoint_steps(self) -> list[int]:
        """The chunk counts of the checkpoints on disk, oldest first (whether each is usable is the
        `checkpoint.Checkpointer`'s to find out)."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(int(p.name) for p in self.checkpoints.iterdir() if p.name.isdigit())

    def has_checkpoint(self) -> bool:
        return bool(self.checkpoint_steps())


def resumed_config(stored: Config, requested: Config) -> Config:
    """The config a resumed run goes on with: `stored`, or `stored` with a larger total_iterations.

    Only the run's length can change on a resume (the state and the chunks done so far stay
    valid); any other key that differs is named in the ConfigError.
    """
    before, after = to_dict(stored), to_dict(requested)
    changed = [k for k in before if before[k] != after[k] and k != "total_iterations"]
    if changed:
        k = changed[0]
        more = f" (and {', '.join(changed[1:])})" if changed[1:] else ""
        raise ConfigError(f"{k} is {before[k]!r} in that run, {after[k]!r} given{more}; a resumed run keeps its "
                          "config (only total_iterations can grow): drop the option, or start a new run with --out")
    if requested.total_iterations < stored.total_iterations:
        raise ConfigError(f"total_iterations {requested.total_iterations} is below the run's "
                          f"{stored.total_iterations}; a resumed run can only be made longer")
    if requested.total_iterations > stored.total_iterations and stored.total_iterations % stored.eval_interval:
        raise ConfigError(f"the run cannot be made longer: its last chunk is shorter than eval_interval "
                          f"(total_iterations {stored.total_iterations} is not a multiple of "
                          f"{stored.eval_interval}), so the new chunks would not line up with its checkpoints")
    return requested
