"""The DACER paper's Table 1 (DACER_SPEC §6): final performance on the Gym v3 tasks, 5 seeds, 1.5M iterations.

The metric: per seed, the highest evaluation return within the last 10% of
iterations; then mean +- std over the 5 seeds. This project runs Gymnasium's
v5 definitions of the same tasks, whose returns are close to v3's but not
identical; MultiGoal is not in the table.
"""

from __future__ import annotations

import re

# Columns and rows in the paper's order.
ALGORITHMS: tuple[str, ...] = ("DACER", "DSAC", "SAC", "TD3", "DDPG", "TRPO", "PPO")
TASKS: tuple[str, ...] = (
    "Humanoid", "Ant", "HalfCheetah", "Walker2d", "InvertedDoublePendulum", "Hopper", "Pusher", "Swimmer",
)

# task -> algorithm -> (mean, std) over seeds.
TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    task: dict(zip(ALGORITHMS, cells))
    for task, cells in {
        "Humanoid": ((11888, 244), (10829, 243), (9335, 695), (5631, 435), (5291, 662), (965, 555), (6869, 1563)),
        "Ant": ((9108, 103), (7086, 261), (6427, 804), (6184, 486), (4549, 788), (6203, 578), (6156, 185)),
        "HalfCheetah": ((17177, 176), (17025, 157), (16573, 224), (8632, 4041), (13970, 2083), (4785, 967),
                        (5789, 2200)),
        "Walker2d": ((6701, 62), (6424, 147), (6200, 263), (5237, 335), (4095, 68), (5502, 593), (4831, 637)),
        "InvertedDoublePendulum": ((9360, 0), (9360, 0), (9360, 0), (9347, 15), (9183, 9), (6259, 2065),
                                   (9356, 2)),
        "Hopper": ((4104, 49), (3660, 533), (2483, 943), (3569, 455), (2644, 659), (3474, 400), (2647, 482)),
        "Pusher": ((-19, 1), (-19, 1), (-20, 0), (-21, 1), (-30, 6), (-23, 2), (-23, 1)),
        "Swimmer": ((152, 7), (138, 6), (140, 14), (134, 5), (146, 4), (70, 38), (130, 2)),
    }.items()
}

# An algorithm's name in this project (config.yaml's `algo`, lower case) -> its column in the paper.
# The paper's "DSAC" is DSAC-T (DACER_SPEC §9).
PAPER_COLUMN: dict[str, str] = {
    "dacer": "DACER", "dsac": "DSAC", "dsac-t": "DSAC", "dsac_t": "DSAC", "dsact": "DSAC", "sac": "SAC",
    "td3": "TD3", "ddpg": "DDPG", "trpo": "TRPO", "ppo": "PPO",
}


def paper_task(env: str) -> str | None:
    """The paper's name of a task ("Hopper-v5" -> "Hopper"), or None if the paper has no such task."""
    name = re.sub(r"-v\d+$", "", env)
    return name if name in TABLE1 else None


def reference(env: str, algo: str) -> tuple[float, float] | None:
    """The paper's (mean, std) for task `env` (e.g. "Hopper-v5") and algorithm `algo` (e.g. "dacer"), or None."""
    task, column = paper_task(env), PAPER_COLUMN.get(algo.lower())
    if task is None or column is None:
        return None
    return TABLE1[task][column]
