"""Full-state checkpoints of a run with orbax, written atomically, verified on restore.

A checkpoint holds the whole `TrainState` of every seed / grid point
(networks, targets, optimiser states, log_alpha, sigma bound, replay buffer,
env states, PRNG keys, counters) plus the metric rows written so far, under
`RUN_DIR/checkpoints/<chunks done>/`. orbax writes each step into a temporary
directory and renames it when complete, so a crash mid-write leaves no
checkpoint that looks finished; on top of that every checkpoint records a
CRC32 of each array, so a file damaged later (a truncated copy, a bad disk)
is detected on restore and the previous checkpoint is used instead.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
import zlib
from typing import Any, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp


def _checksums(tree: Any) -> list[int]:
    return [zlib.crc32(np.ascontiguousarray(x).view(np.uint8).reshape(-1)) for x in jax.tree.leaves(tree)]


@dataclasses.dataclass
class Restored:
    chunks_done: int
    state: Any
    rows: list[dict]
    skipped: list[str]  # "checkpoint N: reason" for each newer checkpoint that could not be used


class CheckpointError(RuntimeError):
    """No usable checkpoint in a run directory."""


class Checkpointer:
    """Saves and restores `RUN_DIR/checkpoints`, keeping the newest `max_to_keep`."""

    def __init__(self, run_dir: pathlib.Path, max_to_keep: int = 2):
        self.directory = pathlib.Path(run_dir).resolve() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
            ),
        )

    def save(self, chunks_done: int, state: Any, rows: Sequence[dict]) -> tuple[float, int]:
        """Write a checkpoint; returns (seconds, bytes on disk)."""
        start = time.perf_counter()
        host_state = jax.device_get(state)
        meta = {"chunks_done": chunks_done, "rows": list(rows), "crc32": _checksums(host_state)}
        self.manager.save(
            chunks_done,
            args=ocp.args.Composite(state=ocp.args.StandardSave(host_state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self.manager.wait_until_finished()
        seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in (self.directory / str(chunks_done)).rglob("*") if f.is_file())
        return seconds, size

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore(self, abstract_state: Any) -> Restored:
        """The newest checkpoint that restores and matches its checksums.

        Newer checkpoints that fail are reported in `skipped` and deleted.

        Args:
          abstract_state: a pytree of `jax.ShapeDtypeStruct` (e.g. from `jax.eval_shape`)
            with the structure of the saved state.
        Raises:
          CheckpointError if none is usable.
        """
        skipped = []
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract_state)
        for step in reversed(self.steps()):
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()),
                )
                state, meta = restored["state"], restored["meta"]
                if _checksums(jax.device_get(state)) != list(meta["crc32"]):
                    raise ValueError("array checksums do not match (the files were changed or truncated)")
            except Exception as e:  # any failure to read means: not usable, try the previous one
                skipped.append(f"checkpoint {step}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                continue
            # Newer, unusable checkpoints would block saving those steps again.
            for bad in self.steps():
                if bad > step:
                    self.manager.delete(bad)
            return Restored(chunks_done=int(meta["chunks_done"]), state=state, rows=list(meta["rows"]),
                            skipped=skipped)
        detail = "; ".join(skipped) if skipped else "no checkpoints were written"
        raise CheckpointError(f"no usable checkpoint in {self.directory} ({detail})")

    def close(self) -> None:
        self.manager.close()
