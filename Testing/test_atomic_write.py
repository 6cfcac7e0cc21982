"""Atomic outputs: a failed or incomplete write leaves nothing under the final name and no temporary file.

Full disks are simulated two ways: a real 64 KiB tmpfs (when this process may mount one, e.g. as root in
CI containers; skipped otherwise) and an injected ENOSPC / a truncating image writer (always run).
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LesionXAILib import atomic_write
from LesionXAILib.atomic_write import (
    OutputWriteError,
    save_figure,
    split_suffix,
    temporary_path,
    write_csv,
    write_json,
    write_text,
)
from LesionXAILib.geometry import Geometry
from LesionXAILib.image_io import read_image, write_volume


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


@pytest.fixture
def full_disk(tmp_path):
    """Yield a folder on a 64 KiB tmpfs (a disk that fills up), or skip where mounting is not permitted."""
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_temporary_name_keeps_compound_suffix(tmp_path):
    assert split_suffix("probability.nii.gz") == ("probability", ".nii.gz")
    assert split_suffix("table.csv") == ("table", ".csv")
    tmp = temporary_path(tmp_path / "probability.nii.gz")
    assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz") and ".partial-" in tmp.name
    assert temporary_path(tmp_path / "a.nii.gz") != temporary_path(tmp_path / "a.nii.gz")  # two writers never share one


def test_round_trip_of_text_json_csv(tmp_path):
    write_text(tmp_path / "a.txt", "héllo\n")
    write_json(tmp_path / "b.json", {"x": [1, 2]})
    write_csv(tmp_path / "c.csv", ["id", "v"], [{"id": 1, "v": 0.5}])
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.json").read_text() == '{\n  "x": [\n    1,\n    2\n  ]\n}\n'
    assert (tmp_path / "c.csv").read_text().splitlines() == ["id,v", "1,0.5"]
    assert _leftovers(tmp_path) == []


class _FullDiskFile:
    """A file object that stores the first half of what it is given, then fails as a full disk does."""

    def __init__(self, real):
        self.real = real

    def write(self, data):
        self.real.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def test_injected_enospc_leaves_old_file_and_no_partial(tmp_path, monkeypatch):
    target = tmp_path / "explanations.json"
    write_json(target, {"run": "old"})
    monkeypatch.setattr(atomic_write, "open", lambda p, mode: _FullDiskFile(open(p, mode)), raising=False)
    with pytest.raises(OutputWriteError) as info:
        write_json(target, {"run": "new", "data": list(range(1000))})
    message = str(info.value)
    assert "no space left on device" in message and str(target) in message and "\n" not in message
    assert '"old"' in target.read_text()  # the earlier complete file is untouched
    assert _leftovers(tmp_path) == []


def _truncating_writer(real_write):
    def write(image, path, useCompression=False, *args, **kwargs):
        real_write(image, path, useCompression, *args, **kwargs)
        size = os.path.getsize(path)
        with open(path, "r+b") as fh:  # what SimpleITK leaves on a full disk: a short file, and no exception
            fh.truncate(size // 2)

    return write


@pytest.mark.parametrize("name,dtype", [("probability.nii.gz", np.float32), ("instances.nii.gz", np.int16),
                                        ("map.nii", np.int16), ("map.nrrd", np.float32)])  # fmt: skip
def test_silently_truncated_image_write_is_caught(tmp_path, monkeypatch, name, dtype):
    rng = np.random.default_rng(0)
    arr = (rng.random((12, 14, 16)) * 1000).astype(dtype)
    geometry = Geometry((16, 14, 12), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    monkeypatch.setattr(sitk, "WriteImage", _truncating_writer(sitk.WriteImage))
    with pytest.raises(OutputWriteError) as info:
        write_volume(arr, geometry, tmp_path / name)
    assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / name).exists()
    assert _leftovers(tmp_path) == []


def test_image_write_round_trip_is_verified_and_clean(tmp_path):
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    geometry = Geometry((6, 5, 4), (1.0, 2.0, 3.0), (0.5, 1.0, 2.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    p = write_volume(arr, geometry, tmp_path / "labels.nii.gz")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(p))), arr)
    assert _leftovers(tmp_path) == []


def test_real_full_disk_image_write(full_disk):
    """A 64 KiB tmpfs: SimpleITK returns normally, the check finds the short file, nothing is left behind."""
    rng = np.random.default_rng(1)
    arr = rng.random((40, 40, 40)).astype(np.float32)  # 256 KB of noise: does not compress to 64 KiB
    geometry = Geometry((40, 40, 40), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(OutputWriteError) as info:
        write_volume(arr, geometry, full_disk / "probability.nii.gz")
    assert "probability.nii.gz" in str(info.value) and "\n" not in str(info.value)
    assert list(full_disk.iterdir()) == []


def test_real_full_disk_text_write(full_disk):
    write_text(full_disk / "small.txt", "kept\n")
    with pytest.raises(OutputWriteError, match="no space left on device"):
        write_text(full_disk / "big.csv", "x" * 200_000)
    assert sorted(p.name for p in full_disk.iterdir()) == ["small.txt"]
    assert (full_disk / "small.txt").read_text() == "kept\n"


def test_real_full_disk_figure(full_disk):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 8), dpi=100)
    FigureCanvasAgg(fig)
    fig.add_subplot(1, 1, 1).imshow(np.random.default_rng(0).random((300, 300)))  # noise: a large PNG
    with pytest.raises(OutputWriteError):
        save_figure(fig, full_disk / "curve.png")
    assert list(full_disk.iterdir()) == []


def test_written_outputs_read_back_through_input_checks(tmp_path):
    """What write_volume stores passes the reader's own checks (data length, declared size)."""
    rng = np.random.default_rng(2)
    arr = (100 + rng.random((10, 12, 14))).astype(np.float32)
    geometry = Geometry((14, 12, 10), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    p = write_volume(arr, geometry, tmp_path / "flair.nii.gz")
    np.testing.assert_allclose(sitk.GetArrayFromImage(read_image(p, "FLAIR")), arr)
