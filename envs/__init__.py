"""MJX ports of Gymnasium's MuJoCo v5 tasks and the Multi-goal task (DACER_SPEC §8)."""
