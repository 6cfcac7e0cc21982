"""Writing outputs atomically: into a temporary sibling, verified, then renamed over the final name.

Every file LesionXAI writes goes through this module, so that a full disk, a crash or Ctrl-C never leaves
a truncated or half-written file under its final name, and a failed write removes its temporary file and
raises OutputWriteError naming the file. Verification matters because not every writer reports failure:
SimpleITK's writer returns normally on a full disk and leaves a truncated file that reads back without
error, so images are re-read (header, and the stored data length) before the rename.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from LesionXAILib.errors import LesionXAIError

PARTIAL_TAG = ".partial-"
# names whose last two dot-parts form one suffix: the temporary name keeps them last so that writers
# choosing a format by extension (SimpleITK, matplotlib) still pick the right one
COMPOUND_SUFFIXES = (".nii.gz", ".tar.gz")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"

Verifier = Callable[[Path], None]


class OutputWriteError(LesionXAIError, OSError):
    """An output file could not be written completely (full disk, permissions, failed verification)."""


def split_suffix(name: str) -> tuple[str, str]:
    """Return (base, suffix) of a file name, keeping compound suffixes such as '.nii.gz' whole."""
    lower = name.lower()
    for suffix in COMPOUND_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    base, dot, ext = name.rpartition(".")
    if not dot or not base:
        return name, ""
    return base, "." + ext


def temporary_path(final: str | os.PathLike) -> Path:
    """Return a unique temporary sibling of ``final`` (same folder, same suffix, '.partial-<token>' inside)."""
    p = Path(final)
    base, suffix = split_suffix(p.name)
    return p.with_name(f"{base}{PARTIAL_TAG}{uuid.uuid4().hex[:10]}{suffix}")


def is_temporary(path: str | os.PathLike) -> bool:
    """Return True if ``path`` is a temporary name made by ``temporary_path``."""
    return PARTIAL_TAG in Path(path).name


def describe_os_error(exc: BaseException) -> str:
    """Return a short reason for an OSError: 'no space left on device', 'permission denied', ..."""
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno == errno.ENOSPC:
            return "no space left on device"
        return (exc.strerror or os.strerror(exc.errno)).lower()
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def discard(tmp: str | os.PathLike) -> None:
    """Remove a temporary file if it exists (never raises)."""
    try:
        os.unlink(tmp)
    except OSError:
        pass


def commit(tmp: str | os.PathLike, final: str | os.PathLike, verify: Optional[Verifier] = None) -> Path:
    """Verify ``tmp`` (non-empty, then ``verify``), rename it over ``final`` and return ``final``; discard it on failure."""
    tmp, final = Path(tmp), Path(final)
    try:
        try:
            size = tmp.stat().st_size
        except FileNotFoundError:
            raise OutputWriteError(f"could not write '{final}': the writer produced no file") from None
        if size == 0:
            raise OutputWriteError(f"could not write '{final}': the writer produced an empty file (disk full?)")
        if verify is not None:
            verify(tmp)
        os.replace(tmp, final)
    except BaseException as exc:
        discard(tmp)
        _reraise(exc, final)
    return final


def _reraise(exc: BaseException, final: Path) -> None:
    """Re-raise ``exc``; an OSError becomes an OutputWriteError naming ``final`` and the reason."""
    if isinstance(exc, OutputWriteError) or not isinstance(exc, OSError):
        raise exc
    raise OutputWriteError(
        f"could not write '{final}': {describe_os_error(exc)} (nothing was written under that name)"
    ) from exc


def _make_parent(final: Path) -> None:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"could not create the folder of '{final}': {describe_os_error(exc)}") from None


@contextmanager
def atomic_path(path: str | os.PathLike, verify: Optional[Verifier] = None) -> Iterator[Path]:
    """Yield a temporary sibling to write to; it is verified and replaces ``path`` only if the block finishes."""
    final = Path(path)
    _make_parent(final)
    tmp = temporary_path(final)
    try:
        yield tmp
    except BaseException as exc:
        discard(tmp)
        _reraise(exc, final)
    commit(tmp, final, verify)


def write_bytes(path: str | os.PathLike, data: bytes, verify: Optional[Verifier] = None) -> Path:
    """Write ``data`` atomically, checking the stored size, and return the path."""
    expected = len(data)

    def check(tmp: Path) -> None:
        size = tmp.stat().st_size
        if size != expected:
            raise OutputWriteError(f"could not write '{path}': {size} of {expected} bytes stored (disk full?)")
        if verify is not None:
            verify(tmp)

    with atomic_path(path, check) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` atomically (size checked) and return the path."""
    return write_bytes(path, text.encode(encoding))


def write_json(path: str | os.PathLike, data: Any, allow_nan: bool = False) -> Path:
    """Write ``data`` as indented JSON (strict unless ``allow_nan``) atomically and return the path."""
    return write_text(path, json.dumps(data, indent=2, allow_nan=allow_nan) + "\n")


def write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[dict]) -> Path:
    """Write ``rows`` (dicts keyed by ``columns``) as CSV with a header atomically and return the path."""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


def check_png(path: Path) -> None:
    """Raise OutputWriteError unless ``path`` holds a complete PNG (signature first, IEND chunk last)."""
    with open(path, "rb") as fh:
        head = fh.read(len(PNG_SIGNATURE))
        fh.seek(0, os.SEEK_END)
        if fh.tell() < len(PNG_SIGNATURE) + len(PNG_END):
            raise OutputWriteError(f"'{path}' is not a complete PNG (disk full?)")
        fh.seek(-len(PNG_END), os.SEEK_END)
        tail = fh.read()
    if head != PNG_SIGNATURE or tail != PNG_END:
        raise OutputWriteError(f"'{path}' is not a complete PNG (disk full?)")


def save_figure(fig: Any, path: str | os.PathLike, fmt: str = "png", **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (a PNG is checked complete) and return the path."""
    with atomic_path(path, check_png if fmt == "png" else None) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return Path(path)


def write_image(image: Any, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write a SimpleITK image atomically, re-reading its header and data length before the rename; return the path."""
    import SimpleITK as sitk

    from LesionXAILib.image_checks import verify_written_image

    with atomic_path(path, lambda tmp: verify_written_image(tmp, image, Path(path))) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return Path(path)


__all__ = [
    "OutputWriteError", "atomic_path", "commit", "discard", "is_temporary", "save_figure", "temporary_path",
    "write_bytes", "write_csv", "write_image", "write_json", "write_text",
]  # fmt: skip
