"""Algorithm names -> agents: `make_agent(config, obs_size, action_size)`, and each one's default settings.

`Config.algo` picks the agent; every agent implements `mjx_dacer.agent.Agent`,
so the training program, buffer, evaluation, checkpoints and the runner are
the same for all of them. `defaults(algo)` is what `mjx-dacer train --algo
NAME` layers over a task's preset (and under `--set`): for the baselines, the
paper's Table 2 settings (DACER_SPEC §9); DACER's own are the presets.
PPO and TRPO are named here too (`names`, `defaults`), but they are on-policy
and run through their own trainers (`mjx_dacer.ppo`: brax's; `mjx_dacer.trpo`),
not the shared program: `make_agent` refuses them.
"""

from __future__ import annotations

import importlib
from typing import Any

from mjx_dacer.config import Config, ConfigError

# Table 2 / DACER_SPEC §9, shared by every task: 3 x 256 GeLU networks, 30k warm-up,
# alpha0 0.272 with step size 3e-4, H_target = -dim(A).
_MAX_ENTROPY = {
    "hidden_sizes": [256, 256, 256], "critic_hidden_sizes": [256, 256, 256], "activation": "gelu",
    "critic_activation": "gelu", "warmup_steps": 30_000, "initial_alpha": 0.272, "lr_alpha": 3e-4,
    "target_entropy_factor": 1.0,
}

# Table 2 for TD3 and DDPG: the same networks and warm-up; exploration N(0, 0.1^2) is in td3.py.
_DETERMINISTIC = {k: _MAX_ENTROPY[k] for k in ("hidden_sizes", "critic_hidden_sizes", "activation",
                                                "critic_activation", "warmup_steps")}

# name -> (module, class, settings layered over a task's preset)
_AGENTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "dacer": ("mjx_dacer.dacer", "DACER", {}),
    "sac": ("mjx_dacer.sac", "SAC", _MAX_ENTROPY),
    "dsac-t": ("mjx_dacer.sac", "DSACT", _MAX_ENTROPY),
    "td3": ("mjx_dacer.td3", "TD3", _DETERMINISTIC),
    "ddpg": ("mjx_dacer.td3", "DDPG", _DETERMINISTIC),
}

# The traced settings (HParams) an agent's training never reads: a grid over one of them would train the
# same run at every point (`unused_hparams`; tests/test_train.py checks each agent against its declaration).
_UNUSED_HPARAMS: dict[str, frozenset[str]] = {
    "dacer": frozenset(),
    "sac": frozenset({"noise_scale", "noise_decay"}),  # Eq. 16's noise is DACER's
    "dsac-t": frozenset({"noise_scale", "noise_decay"}),
    # No entropy: alpha and its target are the max-entropy algorithms'; exploration is N(0, 0.1^2) (td3.py).
    "td3": frozenset({"noise_scale", "noise_decay", "lr_alpha", "target_entropy_factor"}),
    "ddpg": frozenset({"noise_scale", "noise_decay", "lr_alpha", "target_entropy_factor"}),
}

# On-policy algorithms run through their own trainers (mjx_dacer.on_policy), not the shared program: no
# agent, no replay buffer and no warm-up. name -> settings layered over a task's preset (Table 2's networks).
_ON_POLICY: dict[str, dict[str, Any]] = {
    "trpo": {**_DETERMINISTIC, "warmup_steps": 0},
    "ppo": {**_DETERMINISTIC, "warmup_steps": 0},
}


# brax's PPO trainer holds its state until it returns: its runs write no checkpoints (a resume keeps the seeds
# that finished and trains the others again, `mjx_dacer.on_policy`).
_WITHOUT_CHECKPOINTS = frozenset({"ppo"})


def names() -> tuple[str, ...]:
    return tuple(_AGENTS) + tuple(_ON_POLICY)


def on_policy(algo: str) -> bool:
    """Whether `algo` runs through its own on-policy trainer (`mjx_dacer.ppo`, `mjx_dacer.trpo`) instead of the
    shared program."""
    return algo in _ON_POLICY


def checkpointed(algo: str) -> bool:
    """Whether a run of `algo` writes checkpoints, so that `mjx-dacer train --resume` can continue it from within
    a seed's training (and make it longer)."""
    return algo not in _WITHOUT_CHECKPOINTS


def unused_hparams(algo: str) -> frozenset[str]:
    """The traced settings `algo`'s training does not read (none listed for the on-policy algorithms, which
    take no grid)."""
    return _UNUSED_HPARAMS.get(algo, frozenset())


def defaults(algo: str) -> dict[str, Any]:
    """The config values `--algo algo` sets over a task's preset (a copy)."""
    return dict(_ON_POLICY[algo] if on_policy(algo) else _AGENTS[algo][2])


def make_agent(config: Config, obs_size: int, action_size: int):
    """The agent `config.algo` names, for a task with these sizes (ConfigError for an on-policy algorithm)."""
    if on_policy(config.algo):
        raise ConfigError(f"{config.algo} is on-policy: it runs through its own trainer, not the shared program "
                          f"(mjx-dacer train --algo {config.algo}, or mjx_dacer.{config.algo}.run)")
    module, cls, _ = _AGENTS[config.algo]
    return getattr(importlib.import_module(module), cls)(config, obs_size, action_size)
