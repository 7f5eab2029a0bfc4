"""A bundle's manifest: every file with its size and sha256, checked before any file is parsed.

`manifest.json` lists every file of a bundle but itself. Writing a bundle (export,
import) writes it last; registering the bundle records the manifest's own sha256 in the
BentoML model store's metadata, outside the bundle it protects. Reading a bundle from the
store checks the manifest against that record, then every file against the manifest:
sizes first (a stat), then hashes, so a swapped, truncated, added or missing file is
refused before onnx, pandas or `tokenizers` sees a byte of it.

A bundle read from a plain folder (a fresh export, SHIFTWATCH_MONITOR_MODELS_DIR) has no
record outside itself: whoever can rewrite one of its files can rewrite the manifest too.
There the manifest proves only that the files are the ones written together (a partial
copy, a corrupted or replaced file); the store's record is what proves they are the ones
that were registered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

MANIFEST_FILE = "manifest.json"
# A manifest lists a handful of files: anything larger is not one, and is not read.
MAX_MANIFEST_BYTES = 64 * 1024


class ManifestError(ValueError):
    """A bundle whose files do not match its manifest, or a manifest that does not match
    its record; the message names the file."""


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks (a model file need not fit in memory twice)."""
    with Path(path).open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def write_manifest(folder: Path, files: Iterable[str]) -> str:
    """Write `folder/manifest.json` for `files` (names in `folder`); returns its sha256."""
    entries = {
        name: {"bytes": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)}
        for name in sorted(files)
    }
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": entries}, indent=2) + "\n")
    return file_sha256(folder / MANIFEST_FILE)


def _entries(path: Path, raw: bytes, allowed: set[str]) -> dict[str, tuple[int, str]]:
    """file name -> (bytes, sha256) from the manifest's bytes; names only from `allowed`
    (so a manifest can never point outside its folder)."""
    try:
        files = json.loads(raw)["files"]
        entries = {
            name: (int(entry["bytes"]), str(entry["sha256"])) for name, entry in files.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ManifestError(f"{path} is not a bundle manifest: {exc!r}") from exc
    unknown = sorted(set(entries) - allowed)
    if unknown:
        raise ManifestError(f"{path} lists files that are not part of a bundle: {unknown}")
    return entries


def verify_manifest(
    folder: Path,
    expected_sha256: str | None,
    required: Iterable[str],
    optional: Iterable[str],
    ignored: Iterable[str] = (),
) -> str:
    """Check `folder`'s files against its manifest, and the manifest against its record.

    Args:
        expected_sha256: the manifest's sha256 as recorded outside the folder (the model
            store's metadata); None for a plain folder, where nothing outside records it.
        required: files every bundle has; optional: files it may have.
        ignored: files that are not the bundle's (the model store's own model.yaml).

    Returns:
        The manifest's sha256.

    Raises:
        ManifestError: no manifest; a manifest that is not the recorded one or not a
            manifest; a file missing, unlisted, or of another size or hash than listed.
    """
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(
            f"model bundle {folder} has no {MANIFEST_FILE} (bundles written before every file "
            "was hashed are not read): export or import it again"
        )
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path} is over {MAX_MANIFEST_BYTES} bytes: not a bundle manifest")
    raw = path.read_bytes()
    actual = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is not None and actual != expected_sha256:
        raise ManifestError(
            f"{path} has sha256 {actual[:12]}…, the model store recorded {expected_sha256[:12]}… "
            "when the bundle was registered: the bundle changed since; register it again"
        )
    required, optional = list(required), list(optional)
    entries = _entries(path, raw, {*required, *optional})
    present = {p.name for p in folder.iterdir()} - {MANIFEST_FILE, *ignored}
    missing = sorted({*required, *entries} - present)
    if missing:
        raise ManifestError(f"model bundle {folder} is missing {', '.join(missing)}")
    extra = sorted(present - set(entries))
    if extra:
        raise ManifestError(f"model bundle {folder} has unexpected files: {', '.join(extra)}")
    for name, (size, sha256) in sorted(entries.items()):
        file = folder / name
        if not file.is_file():
            raise ManifestError(f"{file} is not a regular file")
        found = file.stat().st_size
        if found != size:
            raise ManifestError(
                f"{file} has {found} bytes, {MANIFEST_FILE} lists {size}: the file changed "
                "after the bundle was written; export or import it again"
            )
        digest = file_sha256(file)
        if digest != sha256:
            raise ManifestError(
                f"{file} has sha256 {digest[:12]}…, {MANIFEST_FILE} lists {sha256[:12]}…: the "
                "file changed after the bundle was written; export or import it again"
            )
    return actual
