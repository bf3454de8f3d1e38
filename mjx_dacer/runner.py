"""Host driver: seeds x grid points as one vmapped, sharded program, run chunk by chunk.

The host touches data only between chunks: it prints progress, appends to
metrics.csv and TensorBoard, and redraws curves.png / summary.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import pathlib
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mjx_dacer import report
from mjx_dacer.config import HPARAM_FIELDS, Config, ConfigError, HParams, to_dict
from mjx_dacer.train import TrainProgram, TrainState, make_train

ProgressFn = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Which (grid point, seed) pairs a run contains, in the order of the vmapped axis."""

    grid: tuple[Mapping[str, float], ...]  # hparam overrides per grid point; ({},) for plain training
    seeds: tuple[int, ...]

    @property
    def entries(self) -> list[tuple[int, int]]:
        """(grid index, seed) for each vmapped entry: grid-major, seeds inner."""
        return list(itertools.product(range(len(self.grid)), self.seeds))

    def label(self, g: int) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.grid[g].items()) or "default"


def parse_grid(specs: Sequence[str]) -> tuple[dict[str, float], ...]:
    """["lr_actor=1e-4,3e-4", "noise_scale=0.1,0.15"] -> the Cartesian product as dicts."""
    axes: list[tuple[str, list[float]]] = []
    for spec in specs:
        if "=" not in spec:
            raise ConfigError(f"--grid '{spec}' is not of the form key=v1,v2,...")
        key, values = spec.split("=", 1)
        key = key.strip()
        if key not in HPARAM_FIELDS:
            raise ConfigError(
                f"--grid key '{key}' cannot be swept in one program (it changes shapes or is not a "
                f"hyperparameter); sweepable keys: {', '.join(HPARAM_FIELDS)}"
            )
        try:
            parsed = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--grid '{spec}': values must be numbers separated by commas") from None
        if not parsed:
            raise ConfigError(f"--grid '{spec}' lists no values")
        axes.append((key, parsed))
    if not axes:
        return ({},)
    names = [k for k, _ in axes]
    return tuple(dict(zip(names, combo)) for combo in itertools.product(*(v for _, v in axes)))


def stacked_inputs(config: Config, spec: RunSpec) -> tuple[jax.Array, HParams]:
    """Keys (B, 2) and HParams with leading axis B for the entries of `spec`.

    Seed s always gets the key PRNGKey(config.seed + s), so a grid point's seed s
    reproduces the single run with the same seed.
    """
    keys, hps = [], []
    for g, seed in spec.entries:
        keys.append(jax.random.PRNGKey(config.seed + seed))
        hps.append(config.replace(**spec.grid[g]).hparams())  # validates the swept values too
    return jnp.stack(keys), jax.tree.map(lambda *x: jnp.stack(x), *hps)


def maybe_initialize_distributed() -> None:
    """Multi-host: `jax.distributed.initialize()` when the standard variables are set."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("COORDINATOR_ADDRESS"):
        jax.distributed.initialize()


def run_sharding(batch: int) -> NamedSharding | None:
    """Shard the vmapped run axis over the local devices when it divides evenly."""
    devices = jax.local_devices()
    if len(devices) < 2 or batch % len(devices):
        return None
    return NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))


class Runner:
    """Runs one RunSpec of a config chunk by chunk and writes the run directory."""

    def __init__(self, config: Config, spec: RunSpec, out_dir: pathlib.Path, progress: ProgressFn = print,
                 program: TrainProgram | None = None):
        self.config = config
        self.spec = spec
        self.out_dir = pathlib.Path(out_dir)
        self.progress = progress
        self.program = program or make_train(config)
        self.batch = len(spec.entries)
        self.sharding = run_sharding(self.batch)
        self._init = jax.jit(self.program.vmapped("init"))
        self._chunk = jax.jit(self.program.vmapped("run_chunk"), static_argnums=2, donate_argnums=0)
        self._tb = None

    # ---------------------------------------------------------------- outputs
    def write_config(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        resolved = {**to_dict(self.config), "seeds": list(self.spec.seeds),
                    "grid": [dict(g) for g in self.spec.grid]}
        (self.out_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))

    def rows(self, chunk_metrics: Mapping[str, np.ndarray]) -> list[dict]:
        out = []
        for b, (g, seed) in enumerate(self.spec.entries):
            row: dict[str, Any] = {"run": b, "label": self.spec.label(g), "seed": seed}
            row["iteration"] = int(chunk_metrics["iteration"][b])
            row["env_steps"] = int(chunk_metrics["env_steps"][b])
            for k in sorted(chunk_metrics):
                if k in row or k == "eval_returns":
                    continue
                row[k] = float(chunk_metrics[k][b])
            out.append(row)
        return out

    def _log_tensorboard(self, rows: Sequence[dict]) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # optional at run time
            return
        if self._tb is None:
            self._tb = [SummaryWriter(str(self.out_dir / "tb" / f"run{b:03d}")) for b in range(self.batch)]
        for row in rows:
            w = self._tb[row["run"]]
            for k, v in row.items():
                if k not in report.ID_COLUMNS:
                    w.add_scalar(k, v, row["iteration"])
            w.flush()

    def _refresh_reports(self) -> None:
        rows = report.read_rows(self.out_dir / "metrics.csv")
        title = f"DACER on {self.config.env}"
        report.write_curves(rows, self.out_dir / "curves.png", title)
        (self.out_dir / "summary.md").write_text(report.summary_markdown(rows, self.config.total_iterations, title))

    # -------------------------------------------------------------------- run
    def initial_state(self) -> TrainState:
        keys, hparams = stacked_inputs(self.config, self.spec)
        if self.sharding is not None:
            keys, hparams = jax.device_put((keys, hparams), self.sharding)
        self.hparams = hparams
        return self._init(keys, hparams)

    def run(self) -> TrainState:
        cfg = self.config
        self.write_config()
        ts = self.initial_state()
        sizes = self.program.chunk_sizes
        done_iters, start = 0, time.perf_counter()
        self.progress(
            f"{cfg.env}: {self.batch} run(s) ({len(self.spec.grid)} grid point(s) x {len(self.spec.seeds)} seed(s)), "
            f"{cfg.total_iterations} iterations x {cfg.num_envs} envs in {len(sizes)} chunk(s) on "
            f"{len(jax.local_devices())} {jax.default_backend()} device(s); compiling..."
        )
        for c, n in enumerate(sizes):
            t0 = time.perf_counter()
            ts, metrics = self._chunk(ts, self.hparams, n)
            metrics = jax.device_get(metrics)
            dt = time.perf_counter() - t0
            done_iters += n
            rows = self.rows(metrics)
            report.append_rows(self.out_dir / "metrics.csv", rows)
            self._log_tensorboard(rows)
            self._refresh_reports()
            elapsed = time.perf_counter() - start
            eta = elapsed / done_iters * (cfg.total_iterations - done_iters)
            self.progress(
                f"[{c + 1}/{len(sizes)}] iter {done_iters}/{cfg.total_iterations} "
                f"env steps {done_iters * cfg.num_envs} | "
                f"{n * cfg.num_envs * self.batch / dt:,.0f} env steps/s, "
                f"{float(np.sum(metrics['updates'])) / dt:,.0f} updates/s | "
                f"eval return {np.mean(metrics['eval_return']):.1f} (runs {np.min(metrics['eval_return']):.1f}.."
                f"{np.max(metrics['eval_return']):.1f}) | alpha {np.mean(metrics['alpha']):.3f} | "
                f"ETA {_duration(eta)}"
            )
        if self._tb is not None:
            for w in self._tb:
                w.close()
        return ts


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
