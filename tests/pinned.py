"""Metrics rows pinned to committed files: the same seed and config give the same numbers.

A refactoring of the host side or of the update must leave the metrics of a
fixed seed and config as they were. `assert_pinned(rows, name)` compares
metrics.csv rows with ``tests/pinned/<name>.csv``: counters and text exactly,
floats to rtol 1e-4 (XLA:CPU may fuse differently on another CPU or jaxlib, and
a few updates amplify rounding only slightly). The entropy estimate gets rtol
1e-3: its EM fit of K = 3 components to the tiny configs' 6 samples per state
amplifies rounding about a hundredfold. Hopper's tiny run on jaxlib 0.11.2 against
the rows pinned on 0.10.2: every other float within 3e-6, the entropy within 1.0e-4.
A change that means to alter the
numbers regenerates the files: ``MJX_DACER_UPDATE_PINNED=1 make test``, and
the diff shows what moved.

The pinned numbers are XLA:CPU's. Another backend reduces in other orders
(and an NVIDIA GPU multiplies the networks' matrices in TensorFloat32), so
far past that tolerance: there the rows are not compared, and a warning in
pytest's summary says so; the test's other checks still run.
"""

from __future__ import annotations

import math
import os
import pathlib
import shutil
import warnings

import jax

from mjx_dacer import report

PINNED_DIR = pathlib.Path(__file__).parent / "pinned"
RTOL = {"entropy": 1e-3}  # per column, where not 1e-4: see above


def assert_pinned(metrics_csv: pathlib.Path, name: str) -> None:
    path = PINNED_DIR / f"{name}.csv"
    if jax.default_backend() != "cpu":
        warnings.warn(f"pinned rows {path.name} are XLA:CPU's: not compared on {jax.default_backend()}", stacklevel=2)
        return
    if os.environ.get("MJX_DACER_UPDATE_PINNED") == "1":
        shutil.copyfile(metrics_csv, path)
        return
    assert path.is_file(), f"no pinned rows {path}: run with MJX_DACER_UPDATE_PINNED=1 to write them"
    got, want = report.read_rows(metrics_csv), report.read_rows(path)
    assert len(got) == len(want), (len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        assert list(g) == list(w), f"row {i}: columns {list(g)} != pinned {list(w)}"
        for k in w:
            assert _same(g[k], w[k], RTOL.get(k, 1e-4)), f"row {i} ({name}): {k} = {g[k]!r}, pinned {w[k]!r}"


def _same(got, want, rtol: float) -> bool:
    if not isinstance(want, float) or not isinstance(got, float):
        return got == want
    if math.isnan(want) or want.is_integer():  # blanks, counters, flags: exactly
        return (math.isnan(got) and math.isnan(want)) or got == want
    return math.isclose(got, want, rel_tol=rtol, abs_tol=1e-6)
