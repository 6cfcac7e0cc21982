"""Every option checked before any work or output folder: exit 2, one line naming the option and the reason."""

from __future__ import annotations

import math

import pytest
import SimpleITK as sitk

from explain_fixtures import saved_subject
from LesionXAILib.cli.main import main
from LesionXAILib.cli.validation import RANGES, one_line


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return saved_subject(tmp_path_factory.mktemp("cli_validation"), (24, 28, 24))


def _inputs(subject, out):
    d, model_path, threshold = subject
    return ["--flair", str(d / "flair.nii.gz"), "--t1", str(d / "t1.nii.gz"), "--out", str(out), "--model", str(model_path)]


CASES = [
    ("probe", ["--max-radius", "1e6"], "--max-radius: 1e+06 is above the limit of 300"),
    ("probe", ["--max-radius", "200", "--radius-step", "0.01"], "makes 20001 radii, above the limit of 500"),
    ("probe", ["--radii", "0", "nan"], "--radii: must be a finite number, got nan"),
    ("explain", ["--samples", "1000000000"], "--samples: 1e+09 is above the limit of 10000 (each is one more network pass"),
    ("explain", ["--margin-mm", "inf"], "--margin-mm: must be a finite number, got inf"),
    ("explain", ["--noise-level", "nan"], "--noise-level: must be a finite number"),
    ("explain", ["--ring-mm", "3", "1"], "--ring-mm: the inner radius 3 is larger than the outer 1"),
    ("explain", ["--seed", str(2**40)], "--seed: 1.09951e+12 is above the limit of 4.29497e+09 (the random generators take 32-bit seeds)"),
    ("segment", ["--min-size", "nan"], "--min-size: must be a finite number, got nan"),
    ("segment", ["--threshold", "inf"], "--threshold: must be a finite number, got inf"),
    ("segment", ["--overlap", "0.999"], "--overlap: 0.999 is above the limit of 0.95"),
]


@pytest.mark.parametrize("command,extra,message", CASES, ids=[" ".join(c[1]) for c in CASES])
def test_bad_option_exits_2_in_one_line_before_any_output(subject, tmp_path, capsys, command, extra, message):
    out = tmp_path / "out"
    code = main(["-q", command, *_inputs(subject, out), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_cohort_and_report_options_are_checked_first(tmp_path, capsys):
    out = tmp_path / "cohort_out"
    assert main(["-q", "cohort", "--input", str(tmp_path), "--out", str(out), "--margin-mm", "inf"]) == 2
    assert "--margin-mm: must be a finite number, got inf" in capsys.readouterr().err
    assert not out.exists()
    assert main(["-q", "report", "--run", str(tmp_path), "--half-width", "inf"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--half-width: must be a finite number" in err and "\n" not in err


def test_unknown_instance_is_refused_before_the_output_folder_exists(subject, tmp_path, capsys):
    out = tmp_path / "out"
    d, model_path, threshold = subject
    code = main(["-q", "explain", *_inputs(subject, out), "--threshold", f"{threshold}", "--instances", "99",
                 "--methods", "gradient"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "99" in err and "\n" not in err
    assert not out.exists()


def test_unloadable_model_leaves_no_output_folder(subject, tmp_path, capsys):
    out = tmp_path / "out"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    args = _inputs(subject, out)
    args[args.index("--model") + 1] = str(bad)
    assert main(["-q", "segment", *args]) == 2
    assert "\n" not in capsys.readouterr().err.strip()
    assert not out.exists()


def test_itk_errors_reach_the_user_as_one_line(tmp_path, capsys, monkeypatch):
    garbage = tmp_path / "garbage.nrrd"
    garbage.write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n")
    with pytest.raises(RuntimeError) as info:
        sitk.ReadImage(str(garbage))
    assert "\n" in str(info.value).strip()  # what SimpleITK raises spans several lines
    line = one_line(info.value)
    assert "\n" not in line and "itk::" not in line
    assert line == f"ReadImageInformation: Error reading {garbage}: type (float) and encoding (raw) require endian info"

    from LesionXAILib.cli.commands import segment

    monkeypatch.setattr(segment, "run", lambda args: sitk.ReadImage(str(garbage)))
    base = ["segment", "--flair", "f.nii.gz", "--t1", "t.nii.gz", "--out", str(tmp_path / "o")]
    assert main(["-q", *base]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "RuntimeError" in err and "--debug" in err
    assert main(["-q", "--debug", *base]) == 1
    assert "Traceback" in capsys.readouterr().err  # --debug keeps everything


def test_every_range_has_a_finite_upper_bound():
    for name, rule in RANGES.items():
        assert rule.hi is not None and math.isfinite(rule.hi), name
        assert rule.lo is None or rule.lo <= rule.hi, name
