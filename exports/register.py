"""The BentoML model store: register a bundle under its name, so the service and
`bentoml build` find it as `<name>:latest` (or a pinned `<name>:<version>`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import bentoml
from bentoml.exceptions import NotFound

from shiftwatch.bundle import ModelBundle, verify_bundle_files
from shiftwatch.model_store import MANIFEST_SHA256


def register_bundle(bundle: ModelBundle) -> str:
    """Copy the bundle's files into a new model-store version named after the bundle; returns
    its tag.

    The store's metadata records the hash of the bundle's manifest (`MANIFEST_SHA256`),
    outside the bundle it protects: reading the bundle from the store checks it first
    (`shiftwatch.model_store.read_stored_bundle`). The copy is checked against it before
    the version is saved, so a file changed while copying is never registered.
    """
    meta = bundle.meta
    with bentoml.models.create(
        meta.name,
        labels={"project": "shiftwatch", "architecture": meta.architecture},
        metadata={
            MANIFEST_SHA256: bundle.manifest_sha256,
            "tokenizer_sha256": meta.tokenizer_sha256,
            "max_positions": meta.max_positions,
            "labels": ",".join(meta.labels),
            "reference_accuracy": meta.reference["accuracy"],
            "created_at": meta.created_at,
            "git_commit": meta.git_commit,
        },
    ) as model:
        for path in sorted(bundle.path.iterdir()):
            shutil.copy2(path, model.path_of(path.name))
        verify_bundle_files(Path(model.path), bundle.manifest_sha256)
    return str(model.tag)


def ensure_registered(bundle: ModelBundle) -> str:
    """The tag of the store's latest version of this bundle's name when it holds exactly this
    bundle (the same manifest, so the same files), else the tag of a new version registered
    now."""
    try:
        latest = bentoml.models.get(f"{bundle.meta.name}:latest")
        if latest.info.metadata.get(MANIFEST_SHA256) == bundle.manifest_sha256:
            return str(latest.tag)
    except NotFound:
        pass
    return register_bundle(bundle)
