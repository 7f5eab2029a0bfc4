"""The BentoML model store: register a bundle under its name, so the service and
`bentoml build` find it as `<name>:latest` (or a pinned `<name>:<version>`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import bentoml
from bentoml.exceptions import NotFound

from shiftwatch.bundle import ModelBundle


def register_bundle(bundle: ModelBundle) -> str:
    """Copy the bundle's files into a new model-store version named after the bundle; returns
    its tag."""
    meta = bundle.meta
    with bentoml.models.create(
        meta.name,
        labels={"project": "shiftwatch", "architecture": meta.architecture},
        metadata={
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
    return str(model.tag)


def ensure_registered(bundle: ModelBundle) -> str:
    """The tag of the store's latest version of this bundle's name when it holds exactly this
    bundle (same bundle.json), else the tag of a new version registered now."""
    try:
        latest = bentoml.models.get(f"{bundle.meta.name}:latest")
        if (
            Path(latest.path_of("bundle.json")).read_bytes()
            == (bundle.path / "bundle.json").read_bytes()
        ):
            return str(latest.tag)
    except (NotFound, OSError):
        pass
    return register_bundle(bundle)
