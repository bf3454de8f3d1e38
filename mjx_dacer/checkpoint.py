"""Full-state checkpoints of a run with orbax, written atomically, verified on restore.

A checkpoint holds the whole `TrainState` of every seed / grid point
(networks, targets, optimiser states, log_alpha, sigma bound, replay buffer,
env states, PRNG keys, counters) plus the metric and timing rows written so far, under
`RUN_DIR/checkpoints/<chunks done>/`. A checkpoint is a directory of orbax's
files, so its atomic step is orbax's own: it writes each step into a temporary
directory and renames it when complete, and a crash mid-write leaves no
checkpoint that looks finished (`artifact_io.write_atomically` is the same
idea for the run's single files, such as the policy artifact). On top of that
every checkpoint records `artifact_io.checksums` of its arrays, the CRC32 the
policy artifact uses too, so a file damaged later (a truncated copy, a bad
disk) is detected on restore and the previous checkpoint is used instead.

The state is stored as its flat list of leaves, not as the pytree itself:
orbax cannot save arrays of size zero, and MJX states hold some (e.g. the
actuator activations `act` of a model without stateful actuators, shape
(N, 0)). Only the non-empty leaves go to orbax, keyed by their index; the
shape and dtype of every leaf go to the metadata, and restore rebuilds the
empty ones from it, so any pytree round-trips with its structure and shapes.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from typing import Any, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from mjx_dacer.artifact_io import checksums
from mjx_dacer.errors import CheckpointError


# 1: the pytree itself (no zero-size leaves); 2: non-empty leaves by index; 3: + TrainState.frozen;
# 4: the replay buffer stores each observation once (`mjx_dacer.buffer.Stored`)
FORMAT_VERSION = 4


def _leaf_key(index: int) -> str:
    return f"{index:05d}"


def _signature(leaves: Sequence[Any]) -> list[list]:
    """[shape, dtype name] of every leaf: what restore checks and rebuilds empty leaves from."""
    return [[list(np.shape(x)), np.dtype(x.dtype).name] for x in leaves]


@dataclasses.dataclass
class Restored:
    chunks_done: int
    state: Any
    rows: list[dict]
    timing: list[dict]  # timing.csv's rows up to this checkpoint ([] from a checkpoint written before it existed)
    skipped: list[str]  # "checkpoint N: reason" for each newer checkpoint that could not be used


def snapshot(state: Any) -> list[np.ndarray]:
    """Host copies of the leaves of `state`, owned by the caller.

    The next chunk takes over (is donated) the state's device buffers while the copies are
    written in the background, so nothing may keep a hold on them, or XLA copies the whole
    state instead of updating it in place. A leaf on a GPU goes through `device_get` (the
    transfers run in parallel). A leaf on the CPU is copied with `np.array` alone: since jax
    0.11, the host transfer that `device_get` starts leaves a CPU buffer held, so it could not
    be donated (tests/test_checkpoint.py checks that it still can be).
    """
    leaves = jax.tree.leaves(state)

    def on_cpu(x) -> bool:
        return not isinstance(x, jax.Array) or all(d.platform == "cpu" for d in x.devices())

    device = jax.device_get([x for x in leaves if not on_cpu(x)])
    host = iter(np.asarray(h) for h in device)
    return [np.array(x, copy=True) if on_cpu(x) else next(host) for x in leaves]


class Checkpointer:
    """Saves and restores `RUN_DIR/checkpoints`, keeping the newest `max_to_keep`.

    read_only: for readers of a run directory (`mjx-dacer eval`, `export`): nothing is created,
    cleaned up or deleted, so a reader never disturbs a run that is writing its next checkpoint.
    """

    def __init__(self, run_dir: pathlib.Path, max_to_keep: int = 2, read_only: bool = False):
        self.directory = pathlib.Path(run_dir).resolve() / "checkpoints"
        self.read_only = read_only
        if read_only:  # every option orbax would otherwise switch off itself, with a warning each
            options = ocp.CheckpointManagerOptions(read_only=True, max_to_keep=None, save_interval_steps=0,
                                                   create=False, enable_async_checkpointing=False,
                                                   cleanup_tmp_directories=False)
        else:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False,
                cleanup_tmp_directories=True,  # a write cut off by a kill leaves one behind
            )
        absl_logger = logging.getLogger("absl")
        level = absl_logger.level
        if read_only:  # orbax also warns that a read-only manager's directory is read only: it is asked to be
            absl_logger.setLevel(max(level, logging.ERROR))
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options)
        finally:
            absl_logger.setLevel(level)

    def save(self, chunks_done: int, state: Any, rows: Sequence[dict], timing: Sequence[dict] = ()
             ) -> tuple[float, int]:
        """`snapshot` then `write`, in the calling thread; returns (seconds, bytes on disk)."""
        start = time.perf_counter()
        _, size = self.write(chunks_done, snapshot(state), rows, timing)
        return time.perf_counter() - start, size

    def write(self, chunks_done: int, leaves: Sequence[np.ndarray], rows: Sequence[dict],
              timing: Sequence[dict] = ()) -> tuple[float, int]:
        """Write a checkpoint of a `snapshot`'s leaves with metrics.csv's and timing.csv's rows.

        Reads nothing on the device, so it can run in a background thread while training goes on.
        Returns (seconds, bytes on disk).
        """
        start = time.perf_counter()
        arrays = {_leaf_key(i): x for i, x in enumerate(leaves) if x.size}
        meta = {"format": FORMAT_VERSION, "chunks_done": chunks_done, "rows": list(rows), "timing": list(timing),
                "leaves": _signature(leaves), "crc32": checksums(leaves)}
        self.manager.save(
            chunks_done,
            args=ocp.args.Composite(state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)),
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

        Newer checkpoints that fail are reported in `skipped` and, unless `read_only`, deleted
        (a resuming run must, to save those steps again; a reader must not).

        Args:
          abstract_state: a pytree of `jax.ShapeDtypeStruct` (e.g. from `jax.eval_shape`)
            with the structure of the saved state.
        Raises:
          CheckpointError if none is usable.
        """
        skipped = []
        expected, treedef = jax.tree.flatten(abstract_state)
        signature = _signature(expected)
        for step in reversed(self.steps()):
            try:
                meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
                if meta.get("format") != FORMAT_VERSION:
                    raise ValueError(f"checkpoint format {meta.get('format', 1)}, this mjx_dacer reads "
                                     f"{FORMAT_VERSION}")
                if meta["leaves"] != signature:
                    raise ValueError(_mismatch(meta["leaves"], signature))
                abstract = {_leaf_key(i): jax.ShapeDtypeStruct(x.shape, x.dtype)
                            for i, x in enumerate(expected) if np.prod(x.shape, dtype=int)}
                arrays = self.manager.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
                )["state"]
                leaves = [np.asarray(arrays[_leaf_key(i)]) if np.prod(x.shape, dtype=int)
                          else np.zeros(x.shape, x.dtype) for i, x in enumerate(expected)]
                if checksums(leaves) != list(meta["crc32"]):
                    raise ValueError("array checksums do not match (the files were changed or truncated)")
                state = jax.tree.unflatten(treedef, leaves)
            except Exception as e:  # any failure to read means: not usable, try the previous one
                skipped.append(f"checkpoint {step}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                continue
            # Newer, unusable checkpoints would block saving those steps again.
            for bad in () if self.read_only else self.steps():
                if bad > step:
                    self.manager.delete(bad)
            return Restored(chunks_done=int(meta["chunks_done"]), state=state, rows=list(meta["rows"]),
                            timing=list(meta.get("timing", [])), skipped=skipped)
        detail = "; ".join(skipped) if skipped else "no checkpoints were written"
        raise CheckpointError(f"no usable checkpoint in {self.directory} ({detail})")

    def close(self) -> None:
        self.manager.close()


def _mismatch(saved: list[list], expected: list[list]) -> str:
    """One line on how a checkpoint's arrays differ from what the program expects."""
    if len(saved) != len(expected):
        return (f"it holds {len(saved)} arrays, this program's state has {len(expected)} "
                "(written by another config or mjx_dacer version)")
    i = next(i for i, (a, b) in enumerate(zip(saved, expected)) if a != b)
    return f"array {i} is {saved[i][1]}{saved[i][0]} there, {expected[i][1]}{expected[i][0]} expected"
