"""The single-subject report: structure of the HTML, embedded images, shared scales, geometry of the panels.

The run is a small phantom (64 mm cube) segmented by a hand-built FLAIR detector (a 3x3x3 mean of the
z-scored FLAIR, thresholded at 2 standard deviations) that finds some lesions, misses others and fires
on a few bright non-lesion spots: TP, FP and FN instances, explained and probed through the library.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from PIL import Image
from torch import nn

from LesionXAILib.analysis import AnalysisSettings, analyse_lesions, write_analysis_run
from LesionXAILib.explain import ExplainSettings
from LesionXAILib.geometry import Geometry, array_to_image
from LesionXAILib.image_io import InputPair
from LesionXAILib.instances import extract_instances
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import ModelConfig
from LesionXAILib.phantom import PhantomSettings, generate_phantom
from LesionXAILib.probes import ContextSettings
from LesionXAILib.report import ReportSettings, build_report, load_run
from LesionXAILib.report.lesion_figure import PANEL_SIZE_IN, lesion_figure
from LesionXAILib.report.panels import (
    flair_window,
    lesion_scale,
    lesion_slices,
    shared_scales,
)
from LesionXAILib.report.slices import VIEWS
from LesionXAILib.report.style import OUTLINE_COLOUR, render
from LesionXAILib.report.subject_figures import OVERVIEW_SIZE_IN, SUMMARY_SIZE_IN
from LesionXAILib.segmentation import SegmentationResult, SegmentationSettings, segment


class FlairDetector(nn.Module):
    """logit = gain * (3x3x3 mean of the z-scored FLAIR - level); the mean convolution is the CAM layer."""

    def __init__(self, level: float = 2.0, gain: float = 4.0) -> None:
        super().__init__()
        self.features = nn.Conv3d(2, 2, 3, padding=1, bias=False)
        weight = torch.zeros(2, 2, 3, 3, 3)
        weight[0, 0] = 1 / 27
        weight[1, 1] = 1 / 27
        self.features.weight.data.copy_(weight)
        self.head = nn.Conv3d(2, 1, 1)
        self.head.weight.data.zero_()
        self.head.weight.data[0, 0] = gain
        self.head.bias.data.fill_(-gain * level)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def flair_detector() -> LesionModel:
    """Return the hand-built detector as an eval-mode LesionModel (size divisor 1, CAM at 'features')."""
    cfg = ModelConfig(name="flair-detector", channels=(1,), strides=(), num_res_units=0, roi_size=(64,) * 3, cam_layer="features")
    return LesionModel(FlairDetector(), cfg, source="hand-built").eval()


# the detector sees 1 voxel around each output voxel: small crop margins are exact for it and keep the test fast
SETTINGS = AnalysisSettings(
    explain=ExplainSettings(samples=2, seed=1, roi_margin_mm=8.0),
    context=ContextSettings(radii_mm=(0.0, 1.0, 2.0, 4.0, 6.0), receptive_margin_mm=4.0),
)
HTML_DPI = 60.0  # small images keep the tests fast; sizes are checked against this


def analyse_into(out, model, result: SegmentationResult, settings: AnalysisSettings = SETTINGS) -> None:
    """Explain and probe every instance of ``result`` and write the run directory ``out``."""
    analyses = []
    for a in analyse_lesions(model, result, None, settings):
        a.write(out / f"instance_{a.id}", result.geometry)
        analyses.append(a)
    write_analysis_run(out, result, analyses, settings)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report_run")
    phantom = generate_phantom(5, PhantomSettings(n_lesions=5, fov_mm=(64.0, 64.0, 64.0)))
    paths = phantom.write(out / "phantom")
    pair = phantom.pair()
    pair.flair_path, pair.t1_path = paths["flair"], paths["t1"]
    model = flair_detector()
    result = segment(pair, model, SegmentationSettings(), ground_truth=phantom.lesions)
    statuses = {r.status for r in result.instances.instances}
    assert statuses == {"TP", "FP", "FN"}, statuses  # the fixture must exercise every group
    analyse_into(out, model, result)
    return out


@pytest.fixture(scope="module")
def report(run_dir):
    return build_report(run_dir, settings=ReportSettings(html_dpi=HTML_DPI, export_dpi=2 * HTML_DPI))


class ReportParser(HTMLParser):
    """Collects images, lesion panels, instance-table rows, external references and notes."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []
        self.panels: list[dict] = []
        self.table_rows: list[dict] = []
        self.external: list[str] = []
        self.tags: set[str] = set()
        self.notes: list[str] = []
        self._in_table = False
        self._in_note = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        for key in ("src", "href"):
            value = a.get(key, "")
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)
        if tag == "img":
            self.images.append(a)
        if tag == "section" and "lesion-panel" in a.get("class", ""):
            self.panels.append(a)
        if tag == "table" and a.get("id") == "instance-table":
            self._in_table = True
        if tag == "tr" and self._in_table and "data-lesion-id" in a:
            self.table_rows.append(a)
        if tag == "div" and a.get("class") == "note":
            self._in_note = True
            self.notes.append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        if tag == "div":
            self._in_note = False

    def handle_data(self, data):
        if self._in_note:
            self.notes[-1] += data


def parse(path) -> ReportParser:
    p = ReportParser()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def decode(img: dict) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert img["src"].startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(img["src"][len(prefix) :])))


def test_report_has_one_panel_per_lesion_the_table_and_the_plots(run_dir, report):
    ids = [r["id"] for r in json.loads((run_dir / "instances.json").read_text())["instances"]]
    p = parse(report.html)
    assert [int(s["data-lesion-id"]) for s in p.panels] == ids
    assert [int(r["data-lesion-id"]) for r in p.table_rows] == ids
    statuses = {r["id"]: r["status"] for r in json.loads((run_dir / "instances.json").read_text())["instances"]}
    assert [r["data-status"] for r in p.table_rows] == [statuses[i] for i in ids]
    by_id = {i.get("id"): i for i in p.images}
    expected = {"overview-plot": OVERVIEW_SIZE_IN, "summary-plot": SUMMARY_SIZE_IN}
    expected.update({f"panel-{i}": PANEL_SIZE_IN for i in ids})
    assert set(expected) <= set(by_id)
    for name, (w_in, h_in) in expected.items():
        img = decode(by_id[name])
        img.load()
        assert img.size == (round(w_in * HTML_DPI), round(h_in * HTML_DPI)), name
        assert img.size == (int(by_id[name]["width"]), int(by_id[name]["height"])), name
        assert np.asarray(img.convert("L")).std() > 5, f"{name} is blank"
    assert report.lesions == len(ids) and not report.notes


def test_report_is_self_contained(report):
    p = parse(report.html)
    assert p.external == []
    assert not ({"script", "link", "iframe", "object"} & p.tags)
    text = report.html.read_text(encoding="utf-8")
    assert "url(" not in text and "@import" not in text and "http://" not in text and "https://" not in text


def test_panels_are_exported_for_papers(run_dir, report):
    ids = [r["id"] for r in json.loads((run_dir / "instances.json").read_text())["instances"]]
    pngs = sorted(p.name for p in (run_dir / "figures").glob("lesion_*.png"))
    assert pngs == [f"lesion_{i:03d}.png" for i in ids]
    with Image.open(run_dir / "figures" / pngs[0]) as im:
        assert im.size == (round(PANEL_SIZE_IN[0] * 2 * HTML_DPI), round(PANEL_SIZE_IN[1] * 2 * HTML_DPI))
    assert (run_dir / "figures" / "summary.png").exists() and (run_dir / "figures" / "overview.png").exists()


def test_attribution_colour_scales_are_shared_and_centred_on_zero(run_dir, report):
    run = load_run(run_dir)
    keys = ["smoothgrad_flair", "smoothgrad_mprage"]
    stacks = [lesion_slices(run, les, {k: run.load_map(les, k) for k in keys + ["gradcampp"]}) for les in run.lesions]
    scales = shared_scales(stacks, keys, flair_window(run.flair()))
    assert scales.gradient == pytest.approx(report.scales.gradient)
    # independent: 99.5th percentile of the non-zero |values| over every shown slice of every lesion
    values = np.concatenate([np.abs(s.images[v.name][k]).ravel() for s in stacks for v in VIEWS for k in keys])
    values = values[np.isfinite(values) & (values != 0)]
    assert scales.gradient == pytest.approx(np.percentile(values, 99.5))
    limits = set()
    for stack in stacks[:3]:
        _, axes = lesion_figure(stack, scales, "smoothgrad", ["flair", "mprage"], "gradcampp", (1.0, 3.0))
        for view in VIEWS:
            for key in keys:
                (image,) = axes[f"{view.name}/{key}"].get_images()
                limits.add(tuple(round(v, 9) for v in image.get_clim()))
                assert image.get_cmap().name.startswith("RdBu")
            (cam,) = axes[f"{view.name}/gradcampp"].get_images()
            own = np.concatenate([stack.images[v.name]["gradcampp"].ravel() for v in VIEWS])
            own = own[np.isfinite(own) & (own != 0)]
            assert cam.get_clim() == pytest.approx((0.0, np.percentile(own, 99.5)))
            assert lesion_scale(stack, "gradcampp") == pytest.approx(np.percentile(own, 99.5))
    assert limits == {(round(-scales.gradient, 9), round(scales.gradient, 9))}


def test_missing_parts_are_reported_not_fatal(run_dir, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("instances.json", "instances.nii.gz", "probability.nii.gz"):
        shutil.copy(run_dir / name, partial / name)
    doc = json.loads((partial / "instances.json").read_text())
    doc["inputs"] = {"flair": str(tmp_path / "gone" / "flair.nii.gz"), "t1": None}
    (partial / "instances.json").write_text(json.dumps(doc))
    result = build_report(partial, settings=ReportSettings(html_dpi=40, export="pdf"))
    p = parse(result.html)
    assert len(p.panels) == len(doc["instances"])
    notes = " ".join(p.notes)
    assert "no explanations" in notes and "no context probe" in notes and "FLAIR" in notes and "--flair" in notes
    pdf = (partial / "figures" / "report_panels.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") >= len(doc["instances"]) + 2
    assert not list((partial / "figures").glob("*.png"))


def test_not_a_run_directory_is_a_clear_error(tmp_path):
    from LesionXAILib.errors import InputImageError

    with pytest.raises(InputImageError, match="not a LesionXAI run directory"):
        build_report(tmp_path)


# --- geometry: panels on an anisotropic, axis-permuted and flipped grid -------------------------------------


@pytest.fixture(scope="module")
def oblique_run(tmp_path_factory):
    """A run on a grid whose voxel axes are permuted and flipped w.r.t. RAS, with 0.9 x 1.2 x 2.5 mm voxels."""
    out = tmp_path_factory.mktemp("geometry_run")
    shape = (22, 40, 36)  # k, j, i
    # i -> anterior-to-posterior... columns of the LPS direction matrix: i along -A (= +P), j along +S, k along -L (= +R)
    direction = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    geometry = Geometry(size=(36, 40, 22), origin=(12.0, -30.0, 5.0), spacing=(0.9, 1.2, 2.5), direction=tuple(direction.ravel()))
    kk, jj, ii = np.indices(shape)
    lesion = ((kk - 11) / 2.2) ** 2 + ((jj - 17) / 4.5) ** 2 + ((ii - 21) / 6.0) ** 2 <= 1.0
    rng = np.random.default_rng(0)
    flair = (100 + 5 * rng.standard_normal(shape)).astype(np.float32)
    flair[lesion] = 200
    t1 = (80 + 5 * rng.standard_normal(shape)).astype(np.float32)
    for name, arr in (("flair", flair), ("t1", t1)):
        sitk.WriteImage(array_to_image(arr, geometry), str(out / f"{name}.nii.gz"))
    prob = np.where(lesion, 0.9, 0.1).astype(np.float32)
    instances = extract_instances(prob, geometry, 0.5, 1)
    pair = InputPair(flair, t1, geometry, out / "flair.nii.gz", out / "t1.nii.gz")
    result = SegmentationResult(pair, np.stack([flair, t1]), prob, instances, 0.5, SegmentationSettings(), {"source": "test"})
    result.write(out)
    return out, lesion


def test_views_are_centred_on_the_centroid_and_read_back_the_lesion(oblique_run):
    out, lesion = oblique_run
    run = load_run(out)
    (les,) = run.lesions
    stack = lesion_slices(run, les, {})
    image = sitk.ReadImage(str(out / "instances.nii.gz"))
    labels = sitk.GetArrayFromImage(image)
    # independent centroid: SimpleITK's physical point of the mean voxel index, LPS -> RAS
    kk, jj, ii = np.nonzero(lesion)
    lps = image.TransformContinuousIndexToPhysicalPoint((float(ii.mean()), float(jj.mean()), float(kk.mean())))
    centroid = np.array([-lps[0], -lps[1], lps[2]])
    np.testing.assert_allclose(les.centroid_ras, centroid, atol=1e-6)
    for view in VIEWS:
        grid = stack.grids[view.name]
        c = grid.n // 2
        np.testing.assert_allclose(grid.pixel_to_ras(np.array([c]), np.array([c]))[0], centroid, atol=1e-9)
        # square pixels of pixel_mm in patient space: the physical aspect ratio holds
        p00, p01, p10 = grid.pixel_to_ras(np.array([0, 0, 1]), np.array([0, 1, 0]))
        assert np.linalg.norm(p01 - p00) == pytest.approx(grid.pixel_mm) and np.linalg.norm(p10 - p00) == pytest.approx(grid.pixel_mm)
        mask = stack.get(view.name, "mask")
        assert mask.sum() > 10 and mask[c, c]
        rows, cols = np.nonzero(mask)
        for ras in grid.pixel_to_ras(rows, cols):
            index = image.TransformPhysicalPointToIndex((-ras[0], -ras[1], float(ras[2])))
            assert labels[index[2], index[1], index[0]] == les.id
        # screen directions: the patient's right is on the left (radiological), superior/anterior up
        left, right = grid.pixel_to_ras(np.array([c, c]), np.array([0, grid.n - 1]))
        top = grid.pixel_to_ras(np.array([0]), np.array([c]))[0]
        if view.name in ("axial", "coronal"):
            assert left[0] > right[0]
        else:
            assert left[1] > right[1]
        assert top[1 if view.name == "axial" else 2] > centroid[1 if view.name == "axial" else 2]


def test_rendered_outline_lies_on_the_lesion(oblique_run):
    out, lesion = oblique_run
    run = load_run(out)
    (les,) = run.lesions
    stack = lesion_slices(run, les, {})
    scales = shared_scales([stack], [], flair_window(run.flair()))
    fig, axes = lesion_figure(stack, scales, None, [], None)
    rendered = render(fig, 100, {f"{v.name}/flair": axes[f"{v.name}/flair"] for v in VIEWS})
    pixels = np.asarray(Image.open(io.BytesIO(rendered.png)).convert("RGB")).astype(int)
    cyan = np.array([int(OUTLINE_COLOUR[i : i + 2], 16) for i in (1, 3, 5)])
    image = sitk.ReadImage(str(out / "instances.nii.gz"))
    spacing = np.array(image.GetSpacing())
    lesion_points = np.array([image.TransformIndexToPhysicalPoint((int(i), int(j), int(k))) for k, j, i in zip(*np.nonzero(lesion))])
    for view in VIEWS:
        grid = stack.grids[view.name]
        x0, y0, x1, y1 = rendered.axes_px[f"{view.name}/flair"]
        box = pixels[int(np.ceil(y0)) : int(y1), int(np.ceil(x0)) : int(x1)]
        ys, xs = np.nonzero(np.abs(box - cyan).sum(axis=2) < 60)
        assert xs.size > 20, view.name
        h = grid.half_extent_mm
        u = -h + (xs + np.ceil(x0) + 0.5 - x0) / (x1 - x0) * 2 * h
        v = h - (ys + np.ceil(y0) + 0.5 - y0) / (y1 - y0) * 2 * h
        ras = grid.plane_to_ras(u, v)
        lps = ras * np.array([-1.0, -1.0, 1.0])
        # every outline pixel lies on the lesion's boundary: within one voxel of a lesion voxel centre
        d = np.sqrt(((lps[:, None, :] - lesion_points[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
        assert d.max() <= spacing.max() + 0.5, view.name
        # and the outline surrounds the centre of the panel (the centroid)
        assert u.min() < 0 < u.max() and v.min() < 0 < v.max(), view.name
