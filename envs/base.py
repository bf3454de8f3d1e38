"""Shared plumbing of the MuJoCo tasks: Gymnasium XML -> MJX-backed brax env.

A task subclasses `MujocoTask` and supplies four small pure functions:

* ``initial_state(rng) -> (qpos, qvel)``: Gymnasium's reset distribution;
* ``observation(data) -> obs``: Gymnasium's ``_get_obs`` on MJX ``Data``;
* ``reward(before, after, ctrl) -> (reward, terminated, metrics)``: the
  reward terms under Gymnasium's ``info`` names, computed on the
  actuator-space action ``ctrl`` exactly as Gymnasium computes them
  (`locomotion_reward` is the runners' one);
* class attributes ``xml_file``, ``frame_skip``, ``episode_length``,
  ``physics_profiles`` (see `envs.physics`) and ``Options``: a frozen
  dataclass of Gymnasium's constructor arguments with their v5 defaults
  (plus ``physics``, from `MujocoOptions`), the task's default config.
  ``Task(**overrides)`` holds ``Options(**overrides)`` as ``task.options``.

Everything else (model loading, profiles, action scaling, frame skip, the
post-constraint force pass, brax's ``reset``/``step``) lives here once.

Step semantics match ``gymnasium.envs.mujoco.MujocoEnv``: ``frame_skip``
calls of ``mjx.step`` (forward dynamics, then integration, so positional
quantities such as ``xpos`` lag ``qpos`` by one substep, as in C MuJoCo),
followed by ``mjx.rne_postconstraint`` when the task reads ``cfrc_ext``.

``reset``/``state_from``, ``step`` and the ``pipeline_*`` functions trace with
true float32 matrix products (`mjx_dacer.precision`): on recent NVIDIA GPUs the
default is TensorFloat32, too coarse for physics compared with C MuJoCo.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Callable, ClassVar, Mapping, Sequence

import gymnasium
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from brax.envs.base import PipelineEnv, State
from mujoco import mjx

from mjx_dacer import cpu_threads
from mjx_dacer.precision import float32_matmuls
from mjx_dacer.envs import physics as physics_lib

Metrics = dict[str, jax.Array]


def gymnasium_asset(filename: str) -> pathlib.Path:
    """Path of an XML shipped by the installed gymnasium package (never copied here)."""
    path = pathlib.Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets" / filename
    if not path.is_file():
        raise FileNotFoundError(f"gymnasium {gymnasium.__version__} ships no {filename} (looked for {path})")
    return path


def load_model(filename: str, changes: Sequence[physics_lib.Change] = ()) -> mujoco.MjModel:
    """Compiles Gymnasium's XML ``filename`` and applies ``changes`` to it."""
    model = mujoco.MjModel.from_xml_path(str(gymnasium_asset(filename)))
    return physics_lib.apply(model, changes)


def scale_action(action: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """Maps a policy action in [-1, 1] (clipped first) affinely onto [low, high].

    Shapes: action (..., nu); low, high (nu,). Clipping keeps out-of-range
    actions from inflating the quadratic control costs; MuJoCo would clamp the
    control anyway (``ctrllimited``), but Gymnasium's costs read the unclamped one.
    """
    action = jnp.clip(action, -1.0, 1.0)
    return low + 0.5 * (action + 1.0) * (high - low)


def uniform(rng: jax.Array, shape: Sequence[int], scale: float) -> jax.Array:
    """U(-scale, scale), Gymnasium's ``np_random.uniform(-s, s)``."""
    return jax.random.uniform(rng, shape, minval=-scale, maxval=scale)


def normal(rng: jax.Array, shape: Sequence[int], scale: float) -> jax.Array:
    """scale * N(0, 1), Gymnasium's ``scale * np_random.standard_normal(n)``."""
    return scale * jax.random.normal(rng, shape)


def in_open_range(x: jax.Array, bounds: tuple[float, float]) -> jax.Array:
    """``low < x < high`` elementwise (Gymnasium's strict health checks)."""
    low, high = bounds
    return (x > low) & (x < high)


def quadratic_cost(weight: float, x: jax.Array) -> jax.Array:
    """weight * |x|^2: Gymnasium's control cost (and Ant's and Humanoid's contact cost)."""
    return weight * jnp.sum(jnp.square(x))


def xy_metrics(qpos: jax.Array, xy_velocity: jax.Array) -> Metrics:
    """The position and velocity ``info`` entries of the tasks that move in the plane (Ant, Humanoid, Swimmer)."""
    return {
        "x_position": qpos[0],
        "y_position": qpos[1],
        "distance_from_origin": jnp.linalg.norm(qpos[:2]),
        "x_velocity": xy_velocity[0],
        "y_velocity": xy_velocity[1],
    }


def locomotion_reward(
    options: Any, x_velocity: jax.Array, ctrl: jax.Array, healthy: jax.Array | None = None, **costs: jax.Array
) -> tuple[jax.Array, jax.Array, Metrics]:
    """The runners' reward (Ant, HalfCheetah, Hopper, Humanoid, Swimmer, Walker2d).

      forward_reward_weight * x_velocity [+ healthy_reward * healthy] - ctrl_cost_weight * |ctrl|^2 - sum(costs)

    ``options`` supplies ``forward_reward_weight``, ``ctrl_cost_weight`` and,
    when ``healthy`` is given, ``healthy_reward`` and ``terminate_when_unhealthy``;
    without ``healthy`` the task never terminates. Each of ``costs`` (e.g.
    ``contact=...``) is subtracted and reported as ``reward_<name>``. The terms
    are summed in Gymnasium's order: forward, survive, ctrl, then ``costs``.

    Returns (reward, terminated, terms): terms under Gymnasium's names
    (``reward_forward``, ``reward_survive``, ``reward_ctrl``, ``reward_<name>``).
    """
    forward = options.forward_reward_weight * x_velocity
    reward, terms = forward, {"reward_forward": forward}
    terminated = jnp.array(False)
    if healthy is not None:
        survive = options.healthy_reward * healthy
        reward = reward + survive
        terms["reward_survive"] = survive.astype(jnp.float32)
        terminated = jnp.logical_and(~healthy, options.terminate_when_unhealthy)
    ctrl_cost = quadratic_cost(options.ctrl_cost_weight, ctrl)
    reward = reward - ctrl_cost
    terms["reward_ctrl"] = -ctrl_cost
    for name, cost in costs.items():
        reward = reward - cost
        terms[f"reward_{name}"] = -cost
    return reward, terminated, terms


def compiler_options(env: Any) -> dict[str, Any]:
    """XLA compiler options for a program that steps ``env`` (or a wrapper of it), on this backend.

    Every ``jax.jit`` that contains the task's physics needs them; `jit` adds
    them (``envs.jit(env, fn)``). They are
    the task's ``cpu_compiler_options`` on the CPU backend and nothing
    elsewhere (the options name XLA:CPU flags, which other compilers reject).
    An option this jaxlib's XLA:CPU does not know is left out: XLA's flags come
    and go between releases (``xla_cpu_use_fusion_emitters`` is gone from
    jaxlib 0.11), and a compile that names one fails.
    """
    while hasattr(env, "env"):  # brax wrappers keep the wrapped env in .env
        env = env.env
    if jax.default_backend() != "cpu":
        return {}
    return {k: v for k, v in getattr(env, "cpu_compiler_options", {}).items() if _xla_cpu_takes(k, v)}


@functools.cache
def _xla_cpu_takes(option: str, value: Any) -> bool:
    """Whether XLA:CPU compiles a program with compiler option `option` set to `value` (a tiny test compile)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options={option: value}).lower(jnp.zeros(())).compile()
    except jax.errors.JaxRuntimeError as e:
        if "No such compile option" not in str(e):
            raise
        return False
    return True


def jit(env: Any, fn: Callable, **kwargs: Any) -> Callable:
    """``jax.jit(fn, **kwargs)`` for a function that steps ``env``: the one place that adds its compiler options."""
    return jax.jit(fn, compiler_options=compiler_options(env), **kwargs)


def traced_once(method: Callable) -> Callable:
    """An environment's method as jitted functions of its own, so that its trace is shared.

    A chunk program runs the physics in several places (the training envs'
    step and auto-reset, the evaluation episodes' reset and step), and tracing
    MJX's Python code anew at each is most of the program's tracing time. A
    ``jax.jit`` inside a traced program is traced once per argument shape and
    reused at every call site (XLA then inlines it), so the places share one
    trace. JAX takes compiler options only on the outermost jit, so inside a
    program (tracer arguments) the nested jit has none, and called on concrete
    arrays the method compiles with the task's options (`jit`).
    """
    name = method.__name__

    @functools.wraps(method)
    def shared(self, *args: Any) -> Any:
        nested = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(args))
        jitted = self.__dict__.setdefault("_traced_once", {})
        if (name, nested) not in jitted:
            fn = functools.partial(method, self)
            jitted[name, nested] = jax.jit(fn) if nested else jit(self, fn)
        return jitted[name, nested](*args)

    return shared


@dataclasses.dataclass(frozen=True)
class MujocoOptions:
    """What every MuJoCo task's ``Options`` starts with.

    physics: the profile, ``"fast"`` or ``"faithful"`` (see `envs.physics`).
    """

    physics: str = physics_lib.DEFAULT_PROFILE

    def __post_init__(self):
        physics_lib.validate_profile(self.physics)


class MujocoTask(PipelineEnv):
    """A Gymnasium v5 MuJoCo task on MJX, brax ``PipelineEnv``-compatible.

    ``State.pipeline_state`` is the ``mjx.Data``; ``State.done`` is the
    task's termination (1.0) or 0.0 (time limits are the wrappers' job);
    ``State.metrics`` holds the reward terms by Gymnasium's ``info`` names.

    Attributes:
      options: the task's ``Options``: Gymnasium's defaults, changed by the
        constructor's keyword arguments.
      mj_model: the compiled ``mujoco.MjModel`` after the profile's changes
        (CPU side, for rendering and reference runs).
      physics: the profile name, ``"fast"`` or ``"faithful"`` (``options.physics``).
      physics_changes: the `physics.Change`s applied for that profile.
      episode_length: Gymnasium's ``max_episode_steps``.
      dt: seconds per env step (``timestep * frame_skip``).
    """

    Options: ClassVar[type[MujocoOptions]] = MujocoOptions
    xml_file: ClassVar[str]
    frame_skip: ClassVar[int]
    episode_length: ClassVar[int] = 1000
    physics_profiles: ClassVar[Mapping[str, tuple[physics_lib.Change, ...]]] = {"fast": (), "faithful": ()}
    # cfrc_ext is only computed (rne_postconstraint) for tasks that read it.
    uses_contact_forces: ClassVar[bool] = False
    # Gymnasium's default_camera_config for the task; the runners that
    # Gymnasium films with a fixed camera track their torso here instead.
    camera_config: ClassVar[dict[str, Any]] = {}
    # Gymnasium's two reset rules: qpos0 + U(+-s) and zero velocity plus
    # U(+-s) (`uniform`) or s * N(0, 1) (`normal`), s = options.reset_noise_scale.
    velocity_reset_noise: ClassVar[Callable[[jax.Array, Sequence[int], float], jax.Array]] = staticmethod(uniform)
    # XLA options for programs that step this task on the CPU backend; see
    # `compiler_options`. Empty for every task whose CPU code is fine as it is.
    cpu_compiler_options: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **overrides: Any):
        self.options = self.Options(**overrides)
        cpu_threads.warn_if_unsafe()
        self.physics_changes = tuple(self.physics_profiles[self.physics])
        self.mj_model = load_model(self.xml_file, self.physics_changes)
        # impl="jax": the JAX implementation runs on every backend and is the
        # one that provides rne_postconstraint; never pick Warp implicitly.
        sys = mjx.put_model(self.mj_model, impl="jax")
        super().__init__(sys=sys, backend="mjx", n_frames=self.frame_skip)
        low, high = self.mj_model.actuator_ctrlrange.T
        self.ctrl_low = np.asarray(low, np.float32)
        self.ctrl_high = np.asarray(high, np.float32)
        self.init_qpos = jnp.asarray(self.mj_model.qpos0, jnp.float32)
        self.init_qvel = jnp.zeros(self.mj_model.nv, jnp.float32)

    # -- task interface -----------------------------------------------------

    def initial_state(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        """A random initial (qpos (nq,), qvel (nv,)) by `velocity_reset_noise`'s rule."""
        k_pos, k_vel = jax.random.split(rng)
        scale = self.options.reset_noise_scale
        qpos = self.init_qpos + uniform(k_pos, self.init_qpos.shape, scale)
        qvel = self.init_qvel + self.velocity_reset_noise(k_vel, self.init_qvel.shape, scale)
        return qpos, qvel

    def observation(self, data: mjx.Data) -> jax.Array:
        raise NotImplementedError

    def reward(self, before: mjx.Data, after: mjx.Data, ctrl: jax.Array) -> tuple[jax.Array, jax.Array, Metrics]:
        raise NotImplementedError

    # -- brax interface -----------------------------------------------------

    def reset(self, rng: jax.Array) -> State:
        return self.state_from(*self.initial_state(rng))

    @float32_matmuls
    def state_from(self, qpos: jax.Array, qvel: jax.Array) -> State:
        """The `State` at a given (qpos (nq,), qvel (nv,)): Gymnasium's ``set_state``.

        Like a reset, but to a chosen configuration (tests, evaluation from
        fixed start states).
        """
        data = self.pipeline_init(jnp.asarray(qpos, jnp.float32), jnp.asarray(qvel, jnp.float32))
        # Reset metrics: zeros with exactly the keys step() returns, so the
        # state is one pytree structure across reset and step (scan-able).
        _, _, shapes = jax.eval_shape(self.reward, data, data, jnp.zeros(self.action_size))
        metrics = {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.items()}
        zero = jnp.zeros((), jnp.float32)
        return State(pipeline_state=data, obs=self.observation(data), reward=zero, done=zero, metrics=metrics, info={})

    @float32_matmuls
    def step(self, state: State, action: jax.Array) -> State:
        ctrl = self.scale_action(action)
        before = state.pipeline_state
        after = self.pipeline_step(before, ctrl)
        reward, terminated, metrics = self.reward(before, after, ctrl)
        return state.replace(
            pipeline_state=after,
            obs=self.observation(after),
            reward=reward.astype(jnp.float32),
            done=terminated.astype(jnp.float32),
            metrics=metrics,
        )

    @traced_once
    @float32_matmuls
    def pipeline_init(self, q: jax.Array, qd: jax.Array, act: Any = None, ctrl: Any = None) -> mjx.Data:
        """``mjx.Data`` at (q, qd) after ``mj_forward``, like Gymnasium's ``set_state``."""
        data = mjx.make_data(self.sys, impl="jax").replace(qpos=q, qvel=qd)
        data = mjx.forward(self.sys, data)
        # MJX's kinematics writes normalised free-joint quaternions back into
        # qpos; C MuJoCo leaves qpos as given, so Gymnasium's reset observation
        # shows the noisy, unnormalised quaternion. Keep qpos as given, too.
        return data.replace(qpos=q)

    @traced_once
    @float32_matmuls
    def pipeline_step(self, pipeline_state: mjx.Data, action: jax.Array) -> mjx.Data:
        """``frame_skip`` MJX steps with control ``action`` (actuator space)."""
        data = pipeline_state.replace(ctrl=action)
        data = jax.lax.scan(lambda d, _: (mjx.step(self.sys, d), None), data, (), self.frame_skip)[0]
        if self.uses_contact_forces:
            # Gymnasium calls mj_rnePostConstraint after the substeps; C MuJoCo
            # (and MJX) leave cfrc_ext stale otherwise.
            data = mjx.rne_postconstraint(self.sys, data)
        return data

    def scale_action(self, action: jax.Array) -> jax.Array:
        """[-1, 1]^nu -> actuator ctrlrange (what Gymnasium's ``step`` receives)."""
        return scale_action(action, self.ctrl_low, self.ctrl_high)

    @property
    def physics(self) -> str:
        return self.options.physics

    @property
    def dt(self) -> float:
        return float(self.mj_model.opt.timestep) * self.frame_skip

    @property
    def action_size(self) -> int:
        return int(self.mj_model.nu)

    @functools.cached_property
    def observation_size(self) -> int:
        # Shape inference only: traces reset, compiles and runs nothing.
        return int(jax.eval_shape(self.reset, jax.random.PRNGKey(0)).obs.shape[-1])

    def body_id(self, name: str) -> int:
        return int(mujoco.mj_name2id(self.mj_model, mujoco.mjtObj.mjOBJ_BODY, name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(physics={self.physics!r})"
