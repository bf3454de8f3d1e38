"""The compiled training program: `make_train(config) -> train(key, hparams)`.

One iteration (DACER_SPEC §5) = step `num_envs` environments once with
behaviour actions (uniform random while the buffer holds fewer than
`warmup_steps` transitions), store the transitions, then run
`updates_per_iteration` updates of the agent (`config.algo`: DACER or a
baseline, see `mjx_dacer.agents`) on uniformly sampled batches (none
during the warm-up). A chunk is a run of iterations as one loop
followed by deterministic evaluation episodes, all on the device: first the
`Config.warmup_iterations` of the warm-up (its evaluation is the untrained
policy's, iteration 0; without a warm-up that chunk is only the evaluation),
then `eval_interval` iterations at a time until
`total_iterations` after the warm-up, as the reference counts them. `train`
runs every chunk; the host driver (`mjx_dacer.runner`) calls `run_chunk`
instead, to report and checkpoint between chunks. Both give the same numbers.

Reported iterations (`iteration` in the metrics) count from the end of the
warm-up; `env_steps` counts every environment step, warm-up included.

Everything is a pure function of (key, hparams), so `jax.vmap` over keys gives
seed batches and over `HParams` pytrees gives grid searches.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from mjx_dacer import buffer as replay
from mjx_dacer import envs
from mjx_dacer.agent import Agent, AgentState
from mjx_dacer.agents import make_agent
from mjx_dacer.config import Config, ConfigError, HParams
from mjx_dacer.evaluate import evaluate
from mjx_dacer.envs.wrappers import TrainingWrapper

Metrics = dict[str, jax.Array]


@struct.dataclass
class TrainState:
    """The whole state of one run (one seed / grid point); leaves may carry vmap axes."""

    agent: AgentState
    buffer: replay.ReplayBuffer
    env_state: Any  # brax State of the N training envs (auto-resetting)
    episode_return: jax.Array  # (N,) return so far of each training env's episode
    key: jax.Array
    iteration: jax.Array  # int32 scalar: iterations done, warm-up included
    frozen: jax.Array  # bool scalar: held at its last good state by the divergence guard


def chunk_sizes(cfg: Config) -> list[int]:
    """Iterations per chunk: the warm-up, full `eval_interval` chunks, a shorter last one if needed.

    The warm-up chunk is there even without a warm-up (`warmup_steps=0`: no iterations), for its
    evaluation: every run's first row is the untrained policy at iteration 0.
    """
    full, rest = divmod(cfg.total_iterations, cfg.eval_interval)
    return [cfg.warmup_iterations] + [cfg.eval_interval] * full + ([rest] if rest else [])


@dataclasses.dataclass(frozen=True)
class TrainProgram:
    """The compiled pieces of a run; build with `make_train(config)`.

    Attributes:
      config: the run's Config (static: changing it recompiles).
      env: the raw task (used for evaluation episodes).
      agent: the algorithm (an `mjx_dacer.agent.Agent`; config.algo's unless another is given).
    """

    config: Config
    env: Any
    agent: Agent

    @functools.cached_property
    def training_env(self) -> TrainingWrapper:
        return TrainingWrapper(self.env)

    @property
    def episode_length(self) -> int:
        return int(self.env.episode_length)

    @property
    def chunk_sizes(self) -> list[int]:
        return chunk_sizes(self.config)

    def iterations_after(self, chunks: int) -> int:
        """Reported iteration (counted after the warm-up) at the end of the first `chunks` chunks."""
        return max(sum(self.chunk_sizes[:chunks]) - self.config.warmup_iterations, 0)

    # ------------------------------------------------------------------ init
    def init(self, key: jax.Array, hparams: HParams) -> TrainState:
        """Fresh agent, empty buffer, N reset environments."""
        del hparams  # nothing in the initial state depends on them
        cfg = self.config
        key, k_agent, k_env = jax.random.split(key, 3)
        env_state = self.training_env.reset(jax.random.split(k_env, cfg.num_envs))
        return TrainState(
            agent=self.agent.init(k_agent),
            buffer=replay.init_buffer(cfg.buffer_capacity, self.env.observation_size, self.env.action_size,
                                      cfg.num_envs, self.training_env.episode_length),
            env_state=env_state,
            episode_return=jnp.zeros(cfg.num_envs),
            key=key,
            iteration=jnp.int32(0),
            frozen=jnp.bool_(False),
        )

    # ------------------------------------------------------------- iteration
    @functools.cached_property
    def _update_metric_shapes(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes of the agent's update metrics (traced once: they depend on the config only)."""
        return jax.eval_shape(
            lambda: self.agent.update(
                self.agent.init(jax.random.PRNGKey(0)), self._dummy_batch(), jax.random.PRNGKey(0),
                self.config.hparams(),
            )[1]
        )

    @functools.cached_property
    def _iteration_metric_shapes(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes of `iteration`'s metrics: the update's, and four float32 scalars of its own.

        Stated rather than found with `jax.eval_shape(self.iteration, ...)`, which would trace the
        whole iteration (the physics included) a second time in every chunk program (Hopper-v5 with
        small networks on a 2-core CPU: 39 s of tracing with it, 31 s without). `run_chunk` checks
        each traced iteration against them.
        """
        scalar = jax.ShapeDtypeStruct((), jnp.float32)
        own = ("updated", "policy_actions", "completed_return", "completed_episodes")
        return {**self._update_metric_shapes, **{name: scalar for name in own}}

    def _update_metrics_template(self) -> Metrics:
        """Zeros shaped like the agent's update metrics (for iterations without updates)."""
        return {k: jnp.zeros(v.shape, v.dtype) for k, v in self._update_metric_shapes.items()}

    def _dummy_batch(self) -> replay.Transition:
        n, s, a = self.config.batch_size, self.env.observation_size, self.env.action_size
        return replay.Transition(
            obs=jnp.zeros((n, s)), action=jnp.zeros((n, a)), reward=jnp.zeros(n),
            next_obs=jnp.zeros((n, s)), terminated=jnp.zeros(n), truncated=jnp.zeros(n),
        )

    def iteration(self, ts: TrainState, hparams: HParams) -> tuple[TrainState, Metrics]:
        """One iteration: act in N envs, store N transitions, `updates_per_iteration` updates."""
        cfg = self.config
        key, k_act, k_update = jax.random.split(ts.key, 3)
        # The buffer size only depends on the iteration count, so under vmap this
        # predicate stays unbatched and the cond really skips the untaken branch.
        warmup = ts.buffer.size < cfg.warmup_steps
        obs = ts.env_state.obs

        actions = jax.lax.cond(
            warmup,
            lambda: jax.random.uniform(k_act, (cfg.num_envs, self.env.action_size), minval=-1.0, maxval=1.0),
            lambda: self.agent.behaviour_action(ts.agent, obs, k_act, hparams),
        )
        env_state = self.training_env.step(ts.env_state, actions)
        info = env_state.info
        transitions = replay.Transition(
            obs=obs,
            action=actions,
            reward=env_state.reward,
            next_obs=info["final_obs"],  # the true s', not the auto-reset observation
            terminated=info["terminated"],
            truncated=info["truncated"],
        )
        buffer = replay.insert(ts.buffer, transitions, env_state.obs)

        episode_return = ts.episode_return + env_state.reward
        finished = env_state.done
        completed_return = jnp.sum(episode_return * finished)
        completed_episodes = jnp.sum(finished)
        episode_return = episode_return * (1.0 - finished)

        def run_updates(agent: AgentState):
            def one(agent, k):
                k_batch, k_step = jax.random.split(k)
                batch = replay.sample(buffer, k_batch, cfg.batch_size)
                return self.agent.update(agent, batch, k_step, hparams)

            agent, metrics = jax.lax.scan(one, agent, jax.random.split(k_update, cfg.updates_per_iteration))
            return agent, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

        def skip_updates(agent: AgentState):
            return agent, self._update_metrics_template()

        agent, update_metrics = jax.lax.cond(warmup, skip_updates, run_updates, ts.agent)
        new_ts = TrainState(
            agent=agent,
            buffer=buffer,
            env_state=env_state,
            episode_return=episode_return,
            key=key,
            iteration=ts.iteration + 1,
            frozen=ts.frozen,
        )
        metrics = {
            **update_metrics,
            "updated": 1.0 - warmup.astype(jnp.float32),
            "policy_actions": 1.0 - warmup.astype(jnp.float32),
            "completed_return": completed_return,
            "completed_episodes": completed_episodes,
        }
        return new_ts, metrics

    # ----------------------------------------------------------------- chunk
    def run_chunk(self, ts: TrainState, hparams: HParams, num_iterations: int | jax.Array,
                  max_iterations: int | None = None) -> tuple[TrainState, Metrics]:
        """`num_iterations` iterations, then `eval_episodes` deterministic episodes.

        `num_iterations` is a Python int, which fixes the loop's length in the program, or, with
        `max_iterations`, a traced int32 scalar of at most that: then one compiled program runs
        chunks of every length (the warm-up, the full chunks, a shorter last one) instead of one
        program per length, each compiled apart.

        Returns the new state and one row of metrics (scalars, plus
        `eval_returns` of shape (eval_episodes,) and `nonfinite`, see
        `_first_nonfinite`): training metrics are averaged over the
        iterations of the chunk that ran updates.
        """
        start_iteration = ts.iteration
        # Each iteration's metrics go to row i of a (capacity, ...) table; rows past num_iterations
        # stay zero, and zero rows count nowhere: not updated, no episodes, no policy actions.
        capacity = num_iterations if max_iterations is None else max_iterations
        row_shapes = self._iteration_metric_shapes
        table = {k: jnp.zeros((capacity, *x.shape), x.dtype) for k, x in row_shapes.items()}

        def body(i, carry):
            s, rows = carry
            s, m = self.iteration(s, hparams)
            traced = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in m.items()}
            if traced != row_shapes:  # at trace time: a metric added to `iteration` but not to the shapes
                raise TypeError(f"iteration's metrics {traced} differ from _iteration_metric_shapes {row_shapes}")
            return s, {k: rows[k].at[i].set(v) for k, v in m.items()}

        per_iter = table
        if capacity:  # a chunk of 0 iterations is its evaluation only
            ts, per_iter = jax.lax.fori_loop(0, num_iterations, body, (ts, table))
        divergence = self._first_nonfinite(per_iter, ts.agent, start_iteration, num_iterations)
        updated = per_iter.pop("updated")
        n_updated = jnp.sum(updated)
        row = {k: jnp.sum(v * updated) / jnp.maximum(n_updated, 1.0) for k, v in per_iter.items()
               if k not in ("completed_return", "completed_episodes", "policy_actions")}
        episodes = jnp.sum(per_iter["completed_episodes"])
        row["train_return"] = jnp.sum(per_iter["completed_return"]) / jnp.maximum(episodes, 1.0)
        row["train_episodes"] = episodes
        row["updates"] = n_updated * self.config.updates_per_iteration
        row["policy_iterations"] = jnp.sum(per_iter["policy_actions"])

        key, k_eval = jax.random.split(ts.key)
        ts = ts.replace(key=key)
        agent_state = ts.agent
        returns = evaluate(
            self.env,
            lambda obs, k: self.agent.eval_action(agent_state, obs, k),
            k_eval,
            self.config.eval_episodes,
            self.episode_length,
        ).returns
        row["eval_returns"] = returns
        row["eval_return"] = jnp.mean(returns)
        row["eval_return_std"] = jnp.std(returns)
        warmup = self.config.warmup_iterations
        row["iteration"] = jnp.maximum(ts.iteration - warmup, 0)
        row["env_steps"] = ts.iteration * self.config.num_envs
        row.update(divergence)
        bad = divergence["nonfinite_iteration"]
        row["nonfinite_iteration"] = jnp.where(bad >= 0, jnp.maximum(bad - warmup, 0), -1)
        return ts, row

    # ------------------------------------------------------- divergence guard
    def _first_nonfinite(self, per_iter: Metrics, agent: AgentState, start_iteration: jax.Array,
                         num_iterations: int | jax.Array) -> Metrics:
        """Where a run first produced a non-finite update metric or learned value.

        Returns `nonfinite_iteration` (-1: nowhere) and `nonfinite`: per
        update metric, and "parameters" for the agent's floating-point state
        at the chunk's end, whether it was non-finite at that first iteration.
        `per_iter` rows past `num_iterations` are zeros (finite).
        """
        names = list(self._update_metric_shapes)
        bad = jnp.stack([~jnp.isfinite(per_iter[k]) for k in names], axis=1)  # (capacity, metrics)
        if bad.shape[0] == 0:  # a chunk of 0 iterations (evaluation only): argmax needs a row
            bad = jnp.zeros((1, len(names)), bool)
        bad_iteration = jnp.any(bad, axis=1)
        first = jnp.argmax(bad_iteration)
        any_bad = jnp.any(bad_iteration)
        learned = [x for x in jax.tree.leaves(agent) if jnp.issubdtype(x.dtype, jnp.inexact)]
        params_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in learned]))
        nonfinite = {k: any_bad & bad[first, i] for i, k in enumerate(names)}
        nonfinite["parameters"] = ~any_bad & ~params_finite
        iteration = jnp.where(
            any_bad, start_iteration + first + 1, jnp.where(params_finite, -1, start_iteration + num_iterations)
        )
        return {"nonfinite": nonfinite, "nonfinite_iteration": iteration}

    def run_chunk_guarded(self, ts: TrainState, hparams: HParams, num_iterations: int | jax.Array,
                          max_iterations: int | None = None) -> tuple[TrainState, Metrics]:
        """`run_chunk` that keeps the chunk-start state of a run that diverges in it or was `frozen` before.

        Adds `diverged` (this chunk produced a non-finite value in a run that was
        not frozen) and `frozen` (the run is held at its last good state, from now
        on) to the row. The shared counters keep advancing; everything the run
        learned is held back.
        """
        new, row = self.run_chunk(ts, hparams, num_iterations, max_iterations)
        # A run frozen before this chunk ran a continuation that is thrown away: its divergence is not news.
        diverged = (row["nonfinite_iteration"] >= 0) & ~ts.frozen
        hold = ts.frozen | diverged
        row["nonfinite_iteration"] = jnp.where(diverged, row["nonfinite_iteration"], -1)
        row["nonfinite"] = jax.tree.map(lambda bad: bad & diverged, row["nonfinite"])

        def keep(new_tree, old_tree):
            return jax.tree.map(lambda n, o: jnp.where(hold, o, n), new_tree, old_tree)

        new = new.replace(
            agent=keep(new.agent, ts.agent).replace(step=new.agent.step),
            buffer=new.buffer.replace(data=keep(new.buffer.data, ts.buffer.data)),
            env_state=keep(new.env_state, ts.env_state),
            episode_return=keep(new.episode_return, ts.episode_return),
            key=keep(new.key, ts.key),
            frozen=hold,
        )
        row["diverged"] = diverged.astype(jnp.float32)
        row["frozen"] = hold.astype(jnp.float32)
        return new, row

    # ------------------------------------------------------ batches of runs
    # Seeds and grid points are a leading "run" axis R of the state and of HParams.
    # The counters stay unbatched (see `state_axes`).

    @functools.cached_property
    def state_axes(self) -> TrainState:
        """vmap axes of a batched TrainState: 0 everywhere except the counters.

        The counters (iteration, buffer fill, the agent's update count `step`) are the same for
        every seed and grid point, so they stay unbatched. That keeps the
        predicates of the warm-up, policy-delay and entropy-estimate `lax.cond`s
        unbatched, and `vmap` keeps them real branches instead of evaluating
        both sides (the entropy estimate on every update) and selecting.
        """
        shapes = jax.eval_shape(self.init, jax.random.PRNGKey(0), self.config.hparams())
        axes = jax.tree.map(lambda _: 0, shapes)
        return axes.replace(
            iteration=None,
            buffer=axes.buffer.replace(size=None, insert_pos=None),
            agent=axes.agent.replace(step=None),
        )

    def init_batch(self, keys: jax.Array, hparams: HParams) -> TrainState:
        """`init` for R runs: keys (R, 2), HParams leaves (R,)."""
        return jax.vmap(self.init, out_axes=self.state_axes)(keys, hparams)

    def run_chunk_batch(self, ts: TrainState, hparams: HParams, num_iterations: int | jax.Array,
                        max_iterations: int | None = None) -> tuple[TrainState, Metrics]:
        """`run_chunk` for R runs; every metric gains a leading axis R (the chunk length is shared)."""
        chunk = functools.partial(self.run_chunk, num_iterations=num_iterations, max_iterations=max_iterations)
        return jax.vmap(chunk, in_axes=(self.state_axes, 0), out_axes=(self.state_axes, 0))(ts, hparams)

    def run_chunk_guarded_batch(self, ts: TrainState, hparams: HParams, num_iterations: int | jax.Array,
                                max_iterations: int | None = None) -> tuple[TrainState, Metrics]:
        """`run_chunk_guarded` for R runs."""
        chunk = functools.partial(self.run_chunk_guarded, num_iterations=num_iterations,
                                  max_iterations=max_iterations)
        return jax.vmap(chunk, in_axes=(self.state_axes, 0), out_axes=(self.state_axes, 0))(ts, hparams)

    def train_batch(self, keys: jax.Array, hparams: HParams) -> tuple[TrainState, Metrics]:
        """`train` for R runs: keys (R, 2), HParams leaves (R,)."""
        return jax.vmap(self.train, out_axes=(self.state_axes, 0))(keys, hparams)

    def jit(self, fn, **kwargs):
        """`jax.jit` of a function that steps this program's task, with the task's compiler options."""
        return envs.jit(self.env, fn, **kwargs)

    def jit_chunk_batch(self, **kwargs):
        """The chunk program a run compiles: `run_chunk_guarded_batch(ts, hparams, num_iterations)`.

        One program for chunks of every length (the warm-up, the full chunks, a shorter last one):
        `num_iterations` is an int32 argument of at most the longest chunk, so a run compiles it once.
        The state argument is donated. `kwargs` go to `jax.jit` (e.g. out_shardings).
        """
        chunk = functools.partial(self.run_chunk_guarded_batch, max_iterations=max(self.chunk_sizes))
        return self.jit(chunk, donate_argnums=0, **kwargs)

    # ------------------------------------------------------------ whole run
    def train(self, key: jax.Array, hparams: HParams) -> tuple[TrainState, Metrics]:
        """The whole run as one function: metrics stacked over evaluation points (leading axis)."""
        cfg = self.config
        ts = self.init(key, hparams)
        parts = []  # metrics of consecutive chunks, each with a leading chunk axis
        ts, row = self.run_chunk(ts, hparams, cfg.warmup_iterations)  # with none, still the iteration-0 evaluation
        parts.append(jax.tree.map(lambda x: x[None], row))
        full, rest = divmod(cfg.total_iterations, cfg.eval_interval)
        if full:
            ts, rows = jax.lax.scan(lambda s, _: self.run_chunk(s, hparams, cfg.eval_interval), ts, None, length=full)
            parts.append(rows)
        if rest:
            ts, row = self.run_chunk(ts, hparams, rest)
            parts.append(jax.tree.map(lambda x: x[None], row))
        return ts, jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)

    __call__ = train


def make_train(config: Config, env=None, agent: Agent | None = None) -> TrainProgram:
    """Build the training program for `config` (env from `config.env`, agent from `config.algo`, unless given)."""
    if not isinstance(config, Config):
        raise ConfigError(f"make_train takes a Config (e.g. mjx_dacer.config.load_config('hopper')), got a "
                          f"{type(config).__name__}")
    if env is None:
        env = envs.make(config.env, physics=config.physics)
    if agent is None:
        agent = make_agent(config, env.observation_size, env.action_size)
    return TrainProgram(config=config, env=env, agent=agent)
