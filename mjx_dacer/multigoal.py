"""Multi-goal analysis (paper Sec. 5.2, Fig. 2 and 3): the value and action field over the plane, and
which goals a policy reaches from the paper's start points.

Fig. 2 (`value_field`): over a grid of states covering the plane, the value
V(s) = E_{a ~ pi(.|s)}[Q(s, a)], estimated as the mean of the critics' Q (the
`Agent.action_value` the actor maximises) over M behaviour actions per state,
and those actions themselves, which the figure draws as arrows: a multimodal
policy's arrows at one state point several ways. `draw_value_fields` and
`draw_trajectories` draw Fig. 2 and 3 (what `mjx-dacer multigoal --field /
--figure` writes).

The figures only show multimodality; `goal_counts` and `multimodality` put a
number on it. From each start point, N trajectories of the policy as it acts
in training (its behaviour actions: DACER's chain with the Eq. 16 noise, a
Gaussian policy's samples) run for up to 100 steps; each ends at the goal it
reaches first, or at none. Per start point:

  goals_reached   how many of the four goals at least 5% of the trajectories reach
  goal_entropy    the entropy (nats) of the reached-goal distribution (0: one goal; log 4 = 1.386: all four evenly)
  none            the fraction of trajectories that reach no goal

Shapes: P = start points, N = trajectories per start point, T = steps.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from mjx_dacer.envs.multigoal import GOALS

START_POINTS = ((0.0, 0.0), (0.5, 0.5), (0.5, -0.5), (-0.5, -0.5), (-0.5, 0.5))  # the paper's Fig. 3
REACHED_FRACTION = 0.05
PLANE = 7.0  # the walls: states lie in [-7, 7]^2


def value_field(agent, state, hparams, grid: int = 29, samples: int = 32, seed: int = 0):
    """Fig. 2's data for one run: grid coordinates (G,), V (G, G) and actions (G, G, M, 2).

    V[i, j] and actions[i, j] belong to the state (x = xs[j], y = xs[i]) (the layout matplotlib's
    contour and quiver read). V is the mean over the M = `samples` behaviour actions of
    `agent.action_value` at that state, in the critics' units (rewards times reward_scale).
    `state` and `hparams` are one run's (no run axis; `mjx_dacer.trained.TrainedRun.run`).
    """
    xs = np.linspace(-PLANE, PLANE, grid, dtype=np.float32)
    x, y = np.meshgrid(xs, xs)  # (G, G): x varies along columns
    states = jnp.repeat(jnp.stack([x.ravel(), y.ravel()], axis=-1), samples, axis=0)  # (G*G*M, 2)

    @jax.jit
    def field(states, key):
        actions = agent.behaviour_action(state, states, key, hparams)
        return actions, agent.action_value(state, states, actions)

    actions, q = field(states, jax.random.PRNGKey(seed))
    values = np.asarray(q).reshape(grid, grid, samples).mean(axis=-1)
    return xs, values, np.asarray(actions).reshape(grid, grid, samples, 2)


def rollouts(policy, starts=START_POINTS, trajectories: int = 100, steps: int = 100, seed: int = 0):
    """Positions (P, N, T + 1, 2) and the first goal reached (P, N), -1 for none, of `policy` from `starts`.

    `policy` is an `mjx_dacer.policy.RunPolicy` of a MultiGoal-v0 run (any algorithm's: `load_policy`); its
    `act` is used as a pure function,
    with its deterministic flag (load it with deterministic=False for the behaviour policy).
    """
    from mjx_dacer import envs

    env = envs.make("MultiGoal-v0")
    p, n = len(starts), trajectories
    start = jnp.repeat(jnp.asarray(starts, jnp.float32), n, axis=0)  # (P*N, 2)
    goals = jnp.asarray(GOALS, jnp.float32)

    def one_step(carry, key):
        pos, goal = carry
        action = policy.act(policy.params, pos, key)
        moved = jax.vmap(lambda s, a: env.step(env.state_from(s), a).obs)(pos, action)
        distance = jnp.linalg.norm(moved[:, None, :] - goals[None], axis=-1)  # (P*N, 4)
        hit = jnp.where(jnp.min(distance, axis=-1) < env.options.goal_radius, jnp.argmin(distance, axis=-1), -1)
        finished = goal >= 0  # the episode ended at a goal on an earlier step: the point stays there
        pos = jnp.where(finished[:, None], pos, moved)
        return (pos, jnp.where(finished, goal, hit)), pos

    keys = jax.random.split(jax.random.PRNGKey(seed), steps)
    (_, goal), path = jax.jit(lambda s, k: jax.lax.scan(one_step, (s, jnp.full(s.shape[0], -1)), k))(start, keys)
    path = jnp.concatenate([start[None], path], axis=0)  # (T + 1, P*N, 2)
    return np.asarray(path).transpose(1, 0, 2).reshape(p, n, steps + 1, 2), np.asarray(goal).reshape(p, n)


def multimodality(goal: np.ndarray) -> list[dict]:
    """Per start point (rows of `goal`, (P, N) goal indices or -1): goals_reached, goal_entropy, none."""
    out = []
    for row in np.asarray(goal):
        counts = np.array([np.sum(row == g) for g in range(len(GOALS))], float)
        reached = counts.sum()
        probs = counts / reached if reached else counts
        entropy = abs(sum(q * math.log(q) for q in probs if q > 0))  # abs: no -0.0 for one goal
        out.append({
            "goals_reached": int(np.sum(counts >= REACHED_FRACTION * len(row))),
            "goal_entropy": float(entropy),
            "none": float(np.mean(row < 0)),
        })
    return out


# ------------------------------------------------------------------ figures
ARROWS_EVERY = 2  # Fig. 2: arrows on every 2nd grid point, for 4 of the sampled actions: readable, still multimodal
ARROWS_PER_STATE = 4


def _plane_panels(count: int):
    """A Figure of `count` square panels of the plane side by side, the goals' circles on each.
    The Figure API, not pyplot: no backend is switched and nothing stays open."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    fig = Figure(figsize=(4.3 * count, 4))
    axes = fig.subplots(1, count, squeeze=False)[0]
    for ax in axes:
        for gx, gy in GOALS:
            ax.add_patch(Circle((gx, gy), 1.0, fill=False, color="k"))
        ax.set(xlim=(-PLANE, PLANE), ylim=(-PLANE, PLANE), aspect="equal")
    return fig, axes


def draw_trajectories(panels, path=None):
    """Fig. 3: one panel per (title, paths (P, N, T + 1, 2)) from `rollouts`; saved to `path` if given.
    Returns the matplotlib Figure."""
    fig, axes = _plane_panels(len(panels))
    for ax, (title, paths) in zip(axes, panels):
        for start_paths in paths:  # (N, T + 1, 2) per start point
            for xy in start_paths:
                ax.plot(xy[:, 0], xy[:, 1], lw=0.5, alpha=0.4)
        ax.set_title(title)
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def draw_value_fields(panels, path=None):
    """Fig. 2: one panel per (title, (xs, V, actions)) from `value_field`: V(s) as filled contours and
    behaviour actions as arrows; saved to `path` if given. Returns the matplotlib Figure."""
    fig, axes = _plane_panels(len(panels))
    for ax, (title, (xs, values, actions)) in zip(axes, panels):
        contour = ax.contourf(xs, xs, values, levels=20, cmap="viridis")
        fig.colorbar(contour, ax=ax, fraction=0.046, label="V(s) (critic units)")
        pick = slice(None, None, ARROWS_EVERY)
        x, y = [c[pick, pick] for c in np.meshgrid(xs, xs)]
        for m in range(min(ARROWS_PER_STATE, actions.shape[2])):
            a = actions[pick, pick, m]
            ax.quiver(x, y, a[..., 0], a[..., 1], color="w", alpha=0.7, angles="xy", scale_units="xy", scale=1.5,
                      width=0.004)
        ax.set_title(title)
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig
