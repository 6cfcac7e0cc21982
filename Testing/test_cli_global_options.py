"""``-q``/``--quiet`` and ``--debug`` are accepted before and after the subcommand, with the same effect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from LesionXAILib.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "argv, quiet, debug",
    [
        (["phantom", "--seed", "1", "--out", "x"], False, False),
        (["-q", "phantom", "--seed", "1", "--out", "x"], True, False),
        (["phantom", "--seed", "1", "--out", "x", "-q"], True, False),
        (["phantom", "--quiet", "--seed", "1", "--out", "x"], True, False),
        (["--debug", "phantom", "--seed", "1", "--out", "x"], False, True),
        (["phantom", "--seed", "1", "--out", "x", "--debug"], False, True),
        (["--debug", "phantom", "--seed", "1", "--out", "x", "-q"], True, True),
    ],
)
def test_global_options_parse_on_either_side_of_the_subcommand(argv, quiet, debug):
    args = build_parser().parse_args(argv)
    assert (args.quiet, args.debug) == (quiet, debug)


def test_debug_after_the_subcommand_prints_the_traceback(tmp_path, capsys):
    bad = ["phantom", "--seed", "4", "--out", str(tmp_path / "x"), "--lesions", "999"]
    assert main(bad) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(bad + ["--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def _run_phantom(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "LesionXAILib", "phantom", "--seed", "2", "--out", str(out), "--lesions", "1",
            "--fov", "24", "24", "24", *extra]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def test_quiet_after_the_subcommand_silences_info_messages(tmp_path):
    loud = _run_phantom(tmp_path / "loud")
    quiet = _run_phantom(tmp_path / "quiet", "-q")
    assert loud.returncode == 0 and quiet.returncode == 0, loud.stderr + quiet.stderr
    assert "phantom seed 2" in loud.stderr
    assert "phantom seed 2" not in quiet.stderr and (tmp_path / "quiet" / "flair.nii.gz").is_file()
