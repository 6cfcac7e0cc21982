"""The system step of `make test` / `make demo` (.ci/system-deps.sh) on a simulated bare machine:
stubs stand in for apt-get, id, sudo and ldconfig, so nothing is installed here."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "system-deps.sh"


def _stub(folder: Path, name: str, body: str) -> None:
    p = folder / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)


@pytest.fixture
def bare(tmp_path):
    """A PATH holding only grep and stubs: no chromium, no Mesa EGL in the linker cache."""
    if shutil.which("bash") is None or shutil.which("grep") is None:
        pytest.skip("needs bash and grep")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    os.symlink(shutil.which("grep"), bin_ / "grep")
    _stub(bin_, "ldconfig", "echo 'libc.so.6 (libc6,x86-64) => /lib/libc.so.6'")
    _stub(bin_, "apt-get", f'echo "apt-get $*" >> {tmp_path}/apt.log')
    return tmp_path, bin_


def _run(bin_: Path, uid: str):
    _stub(bin_, "id", f"echo {uid}")
    env = {"PATH": str(bin_), "HOME": str(bin_.parent)}
    return subprocess.run([shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_root_installs_what_is_missing(bare):
    tmp, bin_ = bare
    done = _run(bin_, "0")
    assert done.returncode == 0, done.stderr
    log = (tmp / "apt.log").read_text()
    assert "apt-get update" in log and "libegl-mesa0" in log
    # chromium is only asked for where this machine lacks it (the script also looks at /usr/bin/chromium)
    assert ("chromium" in log) == (not os.access("/usr/bin/chromium", os.X_OK))


def test_non_root_without_sudo_names_the_packages_and_stops(bare):
    tmp, bin_ = bare
    done = _run(bin_, "1000")
    assert done.returncode == 1
    assert "apt-get install -y" in done.stderr and "libegl-mesa0" in done.stderr
    assert not (tmp / "apt.log").exists()


def test_non_root_with_sudo_uses_it(bare):
    tmp, bin_ = bare
    _stub(bin_, "sudo", 'if [ "$1" = "-n" ]; then exit 0; fi; "$@"')
    done = _run(bin_, "1000")
    assert done.returncode == 0, done.stderr
    assert "install -y -qq" in (tmp / "apt.log").read_text()


def test_nothing_is_installed_when_everything_is_present(bare):
    tmp, bin_ = bare
    _stub(bin_, "ldconfig", "echo 'libEGL_mesa.so.0 (libc6,x86-64) => /lib/libEGL_mesa.so.0'")
    _stub(bin_, "chromium", "exit 0")
    done = _run(bin_, "1000")
    assert done.returncode == 0 and not (tmp / "apt.log").exists()


def test_make_test_and_ci_run_share_the_system_step():
    makefile = (ROOT / "Makefile").read_text()
    assert "bash .ci/system-deps.sh" in makefile
    assert "test: system-deps" in makefile and "demo: system-deps" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_make_demo_passes_demo_args_through_to_the_demo_command():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", "demo", "DEMO_ARGS=--model unet-anchor"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "lesionxai demo --out demo-output --model unet-anchor" in dry.stdout
