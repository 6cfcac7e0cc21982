"""Writing probe outputs so that an interrupted run never leaves a half-written file under its final name."""

from __future__ import annotations

import csv
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path to write to; it replaces ``path`` only if the block finishes."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix last so that writers choosing a format by extension still work
    tmp = final.with_name(f"{final.stem}.partial{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented strict JSON (no NaN/inf) and return the path."""
    text = json.dumps(data, indent=2, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return Path(path)


def write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[dict]) -> Path:
    """Write ``rows`` (dicts keyed by ``columns``) as CSV with a header and return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(rows)
    return Path(path)
