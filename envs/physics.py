"""Physics profiles: the named edits made to a Gymnasium model after loading it.

Every MuJoCo task loads the XML that the installed gymnasium package ships and
then applies one *profile*, a short tuple of `Change`s, to the compiled
``mujoco.MjModel`` before it is put on the device:

* ``"faithful"``: only what MJX cannot run is changed (Humanoid's PGS solver);
  timestep, integrator, iteration caps and contact settings stay Gymnasium's.
* ``"fast"``: additionally caps the constraint solver's iterations and line
  search, the settings MJX's own documentation names as the main cost of a
  step on accelerators. Each task lists its values and why in its docstring.

Changes are data (field path, value, reason) rather than code, so that the
task docstrings, the README's "Environments" section and the tests can all
name them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import mujoco

PROFILES = ("fast", "faithful")
DEFAULT_PROFILE = "fast"


@dataclasses.dataclass(frozen=True)
class Change:
    """Set ``model.<field> = value`` (``field`` is a dotted path, e.g. ``opt.iterations``)."""

    field: str
    value: Any
    reason: str


def show_value(value: Any) -> str:
    """``NEWTON`` for ``mjtSolver.mjSOL_NEWTON``, ``repr`` otherwise (as docstrings write them)."""
    if isinstance(value, (mujoco.mjtSolver, mujoco.mjtIntegrator, mujoco.mjtCone)):
        return value.name.split("_", 1)[1]
    return repr(value)


# Shared by every task: MJX runs only the CG and Newton solvers.
PGS_TO_NEWTON = Change(
    "opt.solver",
    mujoco.mjtSolver.mjSOL_NEWTON,
    "MJX has no PGS solver; Newton is MuJoCo's default and converges to the same solution",
)


def solver_caps(iterations: int, ls_iterations: int) -> tuple[Change, Change]:
    """The `fast` profile's usual edit: cap the solver's iterations and line search.

    A warm-started Newton solve on these small models is essentially converged
    after a few iterations; MJX otherwise runs up to Gymnasium's 100 iterations
    of 50 line-search steps whenever float32 round-off keeps the improvement
    above ``opt.tolerance``.
    """
    return (
        Change("opt.iterations", iterations, "fewer solver iterations (MJX guidance for speed)"),
        Change("opt.ls_iterations", ls_iterations, "fewer line-search steps (MJX guidance for speed)"),
    )


def validate_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"physics must be one of {PROFILES}, got {profile!r}")
    return profile


def apply(model: mujoco.MjModel, changes: Sequence[Change]) -> mujoco.MjModel:
    """Applies ``changes`` to ``model`` in place and returns it."""
    for change in changes:
        *path, leaf = change.field.split(".")
        target = model
        for part in path:
            target = getattr(target, part)
        if not hasattr(target, leaf):
            raise AttributeError(f"MjModel has no field {change.field!r}")
        setattr(target, leaf, change.value)
    return model
