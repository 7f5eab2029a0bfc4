"""Writing a bundle safely: build it in a staging folder, validate it, then move it into place.

A failed export or import never leaves a half-written bundle, and a bundle that is
replaced is replaced whole.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from shiftwatch.bundle import BundleMeta, ModelBundle, read_bundle, seal_bundle
from shiftwatch.names import validate_model_name
from shiftwatch.reference import load_reference


def git_commit() -> str:
    """The commit of the working copy, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def created_at() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextmanager
def staging_folder(models_dir: Path, name: str) -> Iterator[Path]:
    """An empty folder for bundle `name`, inside `models_dir` (so the final move is a rename),
    removed with whatever is left in it when the block ends."""
    validate_model_name(name)
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=f".{name}-") as tmp:
        staging = Path(tmp) / name
        staging.mkdir()
        yield staging


def publish_bundle(staging: Path, meta: BundleMeta, models_dir: Path) -> ModelBundle:
    """Write bundle.json and the manifest, validate the staged bundle, and move it to
    `models_dir/<name>/`."""
    (staging / "bundle.json").write_text(meta.model_dump_json(indent=2))
    seal_bundle(staging)
    load_reference(read_bundle(staging))  # the whole bundle, its reference window included
    target = models_dir / meta.name
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return read_bundle(target)
