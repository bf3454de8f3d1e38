"""A regular (non-editable) install works: what `pip install git+URL` gives a Colab user.

The editable install that development uses maps the package onto the source
folders, so it hides anything a built wheel leaves out (a forgotten
subpackage, the presets). Here the wheel is built, installed into a fresh
virtual environment with no editable finder active, and used from a folder
outside the repository.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Settings that make a MultiGoal-v0 run take seconds (as TINY_SETS in test_cli.py).
TINY_SETS = [
    "total_iterations=4", "eval_interval=2", "warmup_steps=20", "num_envs=10", "buffer_capacity=200",
    "batch_size=8", "eval_episodes=2", "hidden_sizes=8,8", "critic_hidden_sizes=8,8", "diffusion_steps=2",
    "entropy_samples=6", "alpha_update_interval=2",
]


def source_modules() -> dict[str, pathlib.Path]:
    """Every module of the source tree, by its installed name, from pyproject's package-dir mapping."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    modules = {}
    for package, folder in package_dir.items():
        for file in sorted((ROOT / folder).rglob("*.py")):
            parts = file.relative_to(ROOT / folder).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            name = ".".join((package, *parts)).removesuffix(".__init__")
            modules[name] = file
    return modules


def preset_files() -> list[pathlib.Path]:
    return sorted((ROOT / "configs").glob("*.yaml"))


# Where one test's subprocesses may look: not the repository (the working folder
# is on sys.path for `python -c`), and no PYTHONPATH leading back into it.
def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def run(args, cwd, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    """The wheel of the source tree, built offline (no build isolation: the backend comes from .venv)."""
    work = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources, and
    # a stale build/lib in the checkout could bring deleted modules back into the wheel.
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".*", "__pycache__", "*.egg-info", "build", "dist", "runs", "results"))
    out = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
               "-w", work / "dist", source], cwd=work)
    assert out.returncode == 0, out.stdout + out.stderr
    (built,) = (work / "dist").glob("mjx_dacer-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> pathlib.Path:
    """A fresh virtual environment holding the wheel; its dependencies come from this interpreter's site-packages.

    The dependencies are reached through a .pth file that names this
    interpreter's site-packages as a plain path entry: Python does not process
    the .pth files of such an entry, so the editable install's finder (which
    maps mjx_dacer onto the repository) stays inactive.
    """
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True)
    python = root / "bin" / "python"
    site_packages = pathlib.Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                     cwd=root).stdout.strip())
    dependencies = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site_packages / "_mjx_dacer_test_dependencies.pth").write_text("\n".join(dependencies) + "\n")
    # The new interpreter runs pip (importable through that .pth) so that the console script
    # points at it; --ignore-installed: the editable mjx-dacer of .venv is visible but not ours to replace.
    out = run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
               "--no-warn-script-location", "--prefix", root, wheel], cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
    return root


def test_wheel_holds_every_module_and_preset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {name.replace(".", "/") + ("/__init__.py" if file.name == "__init__.py" else ".py")
               for name, file in source_modules().items()}
    presets = {f"mjx_dacer/configs/{file.name}" for file in preset_files()}
    assert (modules | presets) - names == set()


def test_installed_package_imports_every_module_and_loads_every_preset(venv, tmp_path):
    # One interpreter imports everything (importing jax, brax and mujoco is the slow part).
    script = """if True:
        import importlib, importlib.util, json, sys
        import mjx_dacer
        from mjx_dacer.config import load_config, preset_names
        modules = {}
        for name in json.loads(sys.argv[1]):
            try:
                if name.endswith(".__main__"):  # importing it would run it
                    modules[name] = importlib.util.find_spec(name).origin
                else:
                    modules[name] = importlib.import_module(name).__file__
            except Exception as e:
                modules[name] = f"error: {e!r}"
        presets = {}
        for name in preset_names():
            try:
                presets[name] = load_config(name).env
            except Exception as e:
                presets[name] = f"error: {e!r}"
        print(json.dumps({"package": mjx_dacer.__file__, "modules": modules, "presets": presets}))
    """
    out = run([venv / "bin" / "python", "-c", script, json.dumps(sorted(source_modules()))], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.splitlines()[-1])
    assert pathlib.Path(found["package"]).is_relative_to(venv), found["package"]
    outside = {name: file for name, file in found["modules"].items() if not pathlib.Path(file).is_relative_to(venv)}
    assert outside == {}, "modules missing from the installed package"
    assert set(found["presets"]) == {file.stem for file in preset_files()}
    assert [v for v in found["presets"].values() if v.startswith("error")] == []


def test_console_script_helps_and_trains(venv, tmp_path):
    command = venv / "bin" / "mjx-dacer"
    assert command.read_text().startswith(f"#!{venv}"), "the console script must run the new venv's interpreter"
    help_ = run([command, "--help"], cwd=tmp_path)
    assert help_.returncode == 0, help_.stderr
    assert all(word in help_.stdout for word in ("train", "sweep", "eval", "bench"))

    sets = [a for kv in TINY_SETS for a in ("--set", kv)]
    out = run([command, "train", "--config", "quickstart", *sets, "--out", tmp_path / "run"], cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    written = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert {"metrics.csv", "policy.msgpack"} <= set(written), written


def test_inside_a_checkout_the_installed_package_is_used_or_the_shadowing_is_named(venv):
    # Python puts the working folder first on sys.path for -c: the checkout's mjx_dacer/ (no envs/).
    python = venv / "bin" / "python"
    shadowed = run([python, "-c", "import mjx_dacer"], cwd=ROOT)
    assert shadowed.returncode == 1
    assert shadowed.stderr.strip().splitlines()[-1].startswith(
        f"ImportError: mjx_dacer was imported from the source folder {ROOT / 'mjx_dacer'}, which is not installed")
    installed = run([python, "-P", "-c", "import mjx_dacer, mjx_dacer.envs; print(mjx_dacer.__file__)"], cwd=ROOT)
    assert installed.returncode == 0, installed.stderr
    assert pathlib.Path(installed.stdout.strip()).is_relative_to(venv)
