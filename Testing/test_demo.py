"""``lesionxai demo`` end to end on a small phantom: with a tiny random network (mechanics) and with the demo model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from explain_fixtures import tiny_unet
from test_report import parse

from LesionXAILib.cli.commands.demo import (
    DEMO_MAX_RADIUS_MM,
    DEMO_SAMPLES,
    DEMO_SEED,
    SMALL_FOV_MM,
    analysis_settings_from_args,
    prepare_output,
    run_demo,
)
from LesionXAILib.cli.main import build_parser, main
from LesionXAILib.errors import Cancelled
from LesionXAILib.instances import label_components
from LesionXAILib.model_loading import save_checkpoint
from LesionXAILib.phantom import PhantomSettings, generate_phantom
from LesionXAILib.progress import CancelToken
from LesionXAILib.resources import DEMO_MODEL_NAME, resources_dir
from LesionXAILib.segmentation import segment

DEMO_MODEL = resources_dir() / "models" / DEMO_MODEL_NAME
LESIONS = 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random U-Net and a threshold at which it yields a handful of instances on the small demo phantom."""
    d = tmp_path_factory.mktemp("demo_model")
    model = tiny_unet(seed=4, dtype=torch.float32)
    path = save_checkpoint(model, d / "tiny.pt")
    phantom = generate_phantom(DEMO_SEED, PhantomSettings(n_lesions=LESIONS, fov_mm=SMALL_FOV_MM))
    prob = segment(phantom.pair(), model).probability
    # the lowest threshold (on a fine grid of top quantiles) giving at most 4 components of >= 3 voxels
    # (how many top voxels form a handful of components depends on the phantom: 3-4 dozen on the current one)
    for q in np.linspace(0.999, 0.99999, 46):
        threshold = float(np.quantile(prob, q))
        if 1 <= label_components(prob >= threshold, 26, 3)[1] <= 4:
            return path, threshold
    raise AssertionError("no threshold gives a handful of instances")


def demo_args(out, model, threshold, *extra):
    return ["demo", "--out", str(out), "--small", "--lesions", str(LESIONS), "--model", str(model), "--threshold", f"{threshold}",
            "--min-size", "3", "--samples", "2", "--max-radius", "3", *extra]  # fmt: skip


def test_demo_runs_end_to_end_and_prints_a_summary(tiny, tmp_path, capsys):
    model, threshold = tiny
    out = tmp_path / "demo"
    assert main(["-q", *demo_args(out, model, threshold, "--export", "none")]) == 0
    printed = capsys.readouterr().out
    for phrase in ("lesions found", "TP", "FP", "FN", "lesion F1", "voxel Dice", "context needed", "report", "total time"):
        assert phrase in printed, phrase
    marker = json.loads((out / "demo.json").read_text())
    assert marker["status"] == "complete" and marker["seed"] == DEMO_SEED
    assert set(marker["stages"]) >= {"phantom", "segment", "explain + probe", "report"}
    seg = json.loads((out / "instances.json").read_text())
    ids = [r["id"] for r in seg["instances"]]
    assert ids and seg["metrics"]["gt_lesions"] >= 1
    assert f"lesions found    {sum(r['source'] == 'prediction' for r in seg['instances'])}" in printed
    p = parse(out / "report.html")
    assert [int(s["data-lesion-id"]) for s in p.panels] == ids
    expl = json.loads((out / "explanations.json").read_text())
    assert expl["settings"]["methods"] == ["smoothgrad", "gradcampp"] and expl["settings"]["aggregation"] == "sum"
    for i in ids:  # every lesion explained (maps on disk) and probed
        assert (out / f"instance_{i}" / "smoothgrad_flair.nii.gz").exists()
        assert (out / f"instance_{i}" / "gradcampp.nii.gz").exists()
        assert (out / f"instance_{i}" / "context_curve.json").exists()


def test_a_new_demo_replaces_only_an_earlier_demo_s_files(tmp_path):
    out = tmp_path / "demo"
    (out / "instance_3").mkdir(parents=True)
    (out / "instance_3" / "smoothgrad_flair.nii.gz").write_bytes(b"old")
    (out / "figures").mkdir()
    for name in ("demo.json", "report.html", "instances.json"):
        (out / name).write_text("{}")
    (out / "my_notes.txt").write_text("keep")
    prepare_output(out)
    assert sorted(p.name for p in out.iterdir()) == ["my_notes.txt"]


def test_max_aggregation_when_asked():
    args = build_parser().parse_args(["demo", "--aggregation", "max"])
    settings = analysis_settings_from_args(args)
    assert settings.explain.aggregation == "max" and settings.explain.methods == ("smoothgrad", "gradcampp")
    default = analysis_settings_from_args(build_parser().parse_args(["demo"]))
    assert default.explain.aggregation == "sum" and default.explain.samples == DEMO_SAMPLES
    assert default.context.radii_mm[-1] == DEMO_MAX_RADIUS_MM


def test_demo_refuses_a_foreign_directory_and_stops_on_cancel(tiny, tmp_path, capsys):
    model, threshold = tiny
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["-q", *demo_args(foreign, model, threshold)]) == 2
    assert "not empty" in capsys.readouterr().err and (foreign / "notes.txt").read_text() == "keep me"
    token = CancelToken()
    token.cancel()
    out = tmp_path / "cancelled"
    args = build_parser().parse_args(["-q", *demo_args(out, model, threshold)])
    with pytest.raises(Cancelled):
        run_demo(args, cancel=token)
    assert json.loads((out / "demo.json").read_text())["status"] == "running"
    assert not (out / "report.html").exists()


@pytest.mark.skipif(not DEMO_MODEL.exists(), reason=f"demo model {DEMO_MODEL} is not installed")
def test_demo_with_the_shipped_model_finds_and_explains_lesions(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--out", str(out), "--small", "--lesions", "2", "--samples", "2", "--max-radius", "4"]) == 0
    capsys.readouterr()
    seg = json.loads((out / "instances.json").read_text())
    assert seg["metrics"]["tp"] >= 1, seg["metrics"]
    assert seg["model"]["source"].endswith(DEMO_MODEL_NAME)
    p = parse(out / "report.html")
    assert len(p.panels) == len(seg["instances"]) and p.notes == []
    # the same report again from the run directory alone
    html = out / "again.html"
    assert main(["-q", "report", "--run", str(out), "--out", str(html), "--export", "none"]) == 0
    again = parse(html)
    assert [s["data-lesion-id"] for s in again.panels] == [s["data-lesion-id"] for s in p.panels]
    assert len(list((out / "figures").glob("lesion_*.png"))) == len(seg["instances"])
