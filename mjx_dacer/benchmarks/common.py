"""What every benchmark table states next to its numbers: device, versions, command."""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import shlex
import subprocess
from typing import Sequence

import jax

import mjx_dacer
from mjx_dacer import cpu_threads


def device_description() -> str:
    """E.g. 'NVIDIA H100 80GB HBM3 (gpu)' or 'cpu: AMD EPYC ... (2 cores)'."""
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        model = platform.processor() or "cpu"
        try:
            for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return f"cpu: {model} ({os.cpu_count()} cores)"
    driver = nvidia_driver() if dev.platform == "gpu" else None
    return (f"{dev.device_kind} ({dev.platform}, {len(jax.devices())} device(s)"
            f"{f', NVIDIA driver {driver}' if driver else ''})")


def nvidia_driver() -> str | None:
    """The NVIDIA driver's version from nvidia-smi, or None where there is none."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    versions = done.stdout.split()
    return versions[0] if done.returncode == 0 and versions else None


def header(title: str, argv: Sequence[str]) -> list[str]:
    import mujoco

    command = "mjx-dacer bench " + shlex.join(list(argv)[list(argv).index("bench") + 1:]) if "bench" in argv \
        else shlex.join(list(argv))
    return [
        f"## {title}",
        "",
        f"- device: {device_description()}",
        f"- jax {jax.__version__}, mujoco {mujoco.__version__}, python {platform.python_version()}",
        *([f"- XLA:CPU: {cpu_threads.pool_size()} intra-op thread(s) (mjx_dacer.cpu_threads: "
           f"{mjx_dacer.CPU_THREADS})"] if jax.default_backend() == "cpu" else []),
        f"- XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
        f"- command: `{command}`",
        f"- date: {datetime.date.today().isoformat()}",
        "",
    ]


def write(path: str | None, lines: Sequence[str]) -> None:
    if path:
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(path).write_text("\n".join(lines) + "\n")
