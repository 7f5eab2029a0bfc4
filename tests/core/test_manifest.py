"""A bundle's manifest: every file checked by size and hash, the manifest by its record."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from shiftwatch.manifest import MANIFEST_FILE, ManifestError, verify_manifest, write_manifest

pytestmark = pytest.mark.unit

REQUIRED, OPTIONAL, IGNORED = ("model.onnx", "bundle.json"), ("model.int8.onnx",), ("model.yaml",)


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, str]:
    """A two-file bundle-like folder with its manifest; (folder, manifest sha256)."""
    (tmp_path / "model.onnx").write_bytes(b"onnx bytes")
    (tmp_path / "bundle.json").write_text('{"name": "x"}')
    return tmp_path, write_manifest(tmp_path, REQUIRED)


def verify(path: Path, expected: str | None = None) -> str:
    return verify_manifest(path, expected, REQUIRED, OPTIONAL, IGNORED)


def test_a_written_manifest_verifies_and_lists_every_file(folder: tuple[Path, str]) -> None:
    path, sha256 = folder
    assert (
        verify(path, sha256)
        == sha256
        == hashlib.sha256((path / MANIFEST_FILE).read_bytes()).hexdigest()
    )
    files = json.loads((path / MANIFEST_FILE).read_text())["files"]
    assert files["model.onnx"] == {
        "bytes": 10,
        "sha256": hashlib.sha256(b"onnx bytes").hexdigest(),
    }
    (path / "model.yaml").write_text("the store's own file")  # not the bundle's: ignored
    assert verify(path, sha256) == sha256


def test_a_file_changed_in_place_is_named(folder: tuple[Path, str]) -> None:
    path, _ = folder
    (path / "model.onnx").write_bytes(b"ONNX BYTES")  # same size, other bytes
    with pytest.raises(ManifestError, match=r"model.onnx has sha256 .*manifest.json lists"):
        verify(path)
    (path / "model.onnx").write_bytes(b"longer onnx bytes")
    with pytest.raises(ManifestError, match=r"model.onnx has 17 bytes, manifest.json lists 10"):
        verify(path)


def test_missing_extra_and_unlisted_files_are_named(folder: tuple[Path, str]) -> None:
    path, _ = folder
    (path / "model.int8.onnx").write_bytes(b"int8")  # allowed, but not in the manifest
    with pytest.raises(ManifestError, match="unexpected files: model.int8.onnx"):
        verify(path)
    (path / "model.int8.onnx").unlink()
    (path / "bundle.json").unlink()
    with pytest.raises(ManifestError, match="is missing bundle.json"):
        verify(path)


def test_a_manifest_naming_a_file_outside_the_bundle_is_refused(tmp_path: Path) -> None:
    for name in REQUIRED:
        (tmp_path / name).write_text(name)
    write_manifest(tmp_path, REQUIRED)
    raw = json.loads((tmp_path / MANIFEST_FILE).read_text())
    raw["files"]["../secrets"] = {"bytes": 1, "sha256": "0" * 64}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"lists files that are not part of a bundle: \['../"):
        verify(tmp_path)


def test_a_rewritten_manifest_is_caught_by_its_record(folder: tuple[Path, str]) -> None:
    """Rewriting a file and the manifest together passes the folder check, not the record's."""
    path, recorded = folder
    (path / "model.onnx").write_bytes(b"other model")
    resealed = write_manifest(path, REQUIRED)
    assert verify(path) == resealed  # a plain folder: nothing outside records the manifest
    with pytest.raises(ManifestError, match="manifest.json has sha256 .*model store recorded"):
        verify(path, recorded)


def test_a_folder_without_a_manifest_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="has no manifest.json .*export or import it again"):
        verify(tmp_path)


def test_a_manifest_that_is_not_one_is_named(folder: tuple[Path, str]) -> None:
    path, _ = folder
    (path / MANIFEST_FILE).write_text('{"files": [1, 2]}')
    with pytest.raises(ManifestError, match="is not a bundle manifest"):
        verify(path)
