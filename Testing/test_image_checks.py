"""Input checks that SimpleITK does not make: declared size before allocating, stored data length, finite model output."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
import time

import nibabel
import numpy as np
import pytest
import torch

from LesionXAILib.errors import InputImageError, LesionXAIError
from LesionXAILib.image_checks import MAX_VOXELS_ENV, check_declared_size, check_finite_output
from LesionXAILib.image_io import load_pair, read_image, read_label_volume

from engine_fixtures import blob_volume, make_image, tiny_model


def _hostile_header(path, shape=(700, 700, 700)) -> None:
    """Write a gzipped NIfTI header declaring ``shape`` float32 voxels, with no data at all."""
    header = nibabel.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\x00" * 4
    with gzip.open(path, "wb") as fh:
        fh.write(raw)


def test_hostile_header_is_refused_quickly_without_allocating(tmp_path):
    path = tmp_path / "flair.nii.gz"
    _hostile_header(path)
    assert os.path.getsize(path) < 200  # the file was 116 bytes
    # a child process, so that its peak memory is measured alone: reading 700^3 float32 would take 1.37 GB
    code = textwrap.dedent(f"""
        import sys, time
        from LesionXAILib.errors import InputImageError
        from LesionXAILib.image_io import read_image
        t = time.perf_counter()
        try:
            read_image({str(path)!r}, "FLAIR")
        except InputImageError as exc:
            print("REFUSED", time.perf_counter() - t, exc)
        # VmHWM: this program's own peak (ru_maxrss would include the forking pytest's size)
        hwm = next(x for x in open("/proc/self/status") if x.startswith("VmHWM"))
        print("MAXRSS_KB", hwm.split()[1])
    """)
    env = {k: v for k, v in os.environ.items() if k != MAX_VOXELS_ENV}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert "REFUSED" in done.stdout, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("REFUSED"))
    assert float(line.split()[1]) < 2.0
    assert "700 x 700 x 700" in line and "--max-image-voxels" in line
    rss_mb = int(done.stdout.split("MAXRSS_KB")[1].split()[0]) / 1024
    assert rss_mb < 600, f"peak memory {rss_mb:.0f} MB: the declared volume was allocated"


def test_declared_size_limit_and_override(tmp_path, monkeypatch):
    check_declared_size((100, 100, 100), 1, "x", limit=10**6)
    with pytest.raises(InputImageError, match="more than the limit of 999,999"):
        check_declared_size((100, 100, 100), 1, "x", limit=999_999)
    vol, _ = blob_volume((8, 9, 10))
    path = tmp_path / "flair.nii.gz"
    import SimpleITK as sitk

    sitk.WriteImage(make_image(vol), str(path))
    monkeypatch.setenv(MAX_VOXELS_ENV, "500")
    with pytest.raises(InputImageError, match="720 voxels, more than the limit of 500"):
        read_image(path, "FLAIR")
    monkeypatch.setenv(MAX_VOXELS_ENV, "720")
    assert read_image(path, "FLAIR").GetSize() == (10, 9, 8)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_truncated_nifti_is_refused_for_every_dtype(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    arr = (rng.random((20, 22, 24)) * 200 + 1).astype(dtype)
    path = tmp_path / f"flair{suffix}"
    nibabel.save(nibabel.Nifti1Image(arr, np.eye(4)), str(path))
    raw = path.read_bytes()
    if suffix == ".nii.gz":
        raw = gzip.compress(gzip.decompress(raw)[: 352 + arr.nbytes // 2])  # a complete gzip stream of half the data
    else:
        raw = raw[: 352 + arr.nbytes // 2]
    path.write_bytes(raw)
    with pytest.raises(InputImageError, match="truncated"):
        read_image(path, "FLAIR")
    with pytest.raises(InputImageError, match="truncated"):
        read_label_volume(path, "ground truth")


def test_cut_gzip_stream_is_refused(tmp_path):
    arr = (np.random.default_rng(1).random((20, 22, 24)) * 300).astype(np.int16)
    path = tmp_path / "t1.nii.gz"
    nibabel.save(nibabel.Nifti1Image(arr, np.eye(4)), str(path))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # a download cut off half-way
    with pytest.raises(InputImageError, match="truncated or corrupt"):
        read_image(path, "MPRAGE")


def test_complete_int16_nifti_is_read(tmp_path):
    arr = (np.random.default_rng(2).random((20, 22, 24)) * 300 + 1).astype(np.int16)
    path = tmp_path / "flair.nii.gz"
    nibabel.save(nibabel.Nifti1Image(arr, np.eye(4)), str(path))
    image = read_image(path, "FLAIR")
    assert image.GetSize() == (20, 22, 24)


class _NaNNetwork(torch.nn.Module):
    """A tiny network whose output is NaN everywhere (e.g. broken weights)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * float("nan")


def test_nan_model_output_is_an_error_not_zero_instances():
    from LesionXAILib.image_io import pair_from_images
    from LesionXAILib.lesion_model import LesionModel
    from LesionXAILib.segmentation import segment

    base = tiny_model()
    model = LesionModel(_NaNNetwork(base.network), base.config).eval()
    vol, _ = blob_volume((24, 24, 24))
    pair = pair_from_images(make_image(vol), make_image(vol[::-1].copy()))
    with pytest.raises(LesionXAIError, match="NaN or infinite"):
        segment(pair, model)


def test_check_finite_output():
    ok = np.zeros((3, 3), np.float32)
    assert check_finite_output(ok) is ok
    with pytest.raises(LesionXAIError, match="2 NaN or infinite values of 9"):
        check_finite_output(np.array([[np.nan, 0, 0], [0, np.inf, 0], [0, 0, 0]]))


def test_load_pair_refuses_truncated_mprage(tmp_path):
    vol, _ = blob_volume((16, 18, 20))
    flair = tmp_path / "flair.nii.gz"
    t1 = tmp_path / "t1.nii"
    nibabel.save(nibabel.Nifti1Image(vol, np.eye(4)), str(flair))
    nibabel.save(nibabel.Nifti1Image(vol.astype(np.int16), np.eye(4)), str(t1))
    t1.write_bytes(t1.read_bytes()[:-1000])
    start = time.perf_counter()
    with pytest.raises(InputImageError, match=r"MPRAGE .*truncated"):
        load_pair(flair, t1)
    assert time.perf_counter() - start < 30
