"""mjx_dacer: DACER (Diffusion Actor-Critic with Entropy Regulator) on MuJoCo MJX, end to end on the device."""

from mjx_dacer.config import Config, ConfigError, HParams, load_config

__all__ = ["Config", "ConfigError", "HParams", "load_config"]
__version__ = "0.1.0"
