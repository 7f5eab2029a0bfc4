"""Register a bundle in the BentoML model store, so `bentoml build` can pack it."""

from __future__ import annotations

import shutil

import bentoml

from shiftwatch.bundle import ModelBundle


def store_name(variant: str) -> str:
    return f"shiftwatch-{variant}"


def register_bundle(bundle: ModelBundle) -> str:
    """Copy the bundle's files into a new model-store version; returns its tag."""
    meta = bundle.meta
    with bentoml.models.create(
        store_name(meta.variant),
        labels={"project": "shiftwatch", "variant": meta.variant},
        metadata={
            "vocab_sha256": meta.vocab_sha256,
            "max_positions": meta.max_positions,
            "reference_accuracy": meta.reference["accuracy"],
            "created_at": meta.created_at,
            "git_commit": meta.git_commit,
        },
    ) as model:
        for path in sorted(bundle.path.iterdir()):
            shutil.copy2(path, model.path_of(path.name))
    return str(model.tag)
