"""Reading the BentoML model store: which shiftwatch bundles it holds, and a stored bundle
checked against the manifest hash recorded beside it (torch-free; BentoML is imported on
use). Registering a bundle is `exports.register`'s job."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shiftwatch.bundle import BundleError, ModelBundle, read_bundle

if TYPE_CHECKING:
    from bentoml import Model

# The model store's metadata key for the sha256 of the bundle's manifest.json: outside the
# bundle, so rewriting the bundle's files and its manifest together is still found out.
MANIFEST_SHA256 = "manifest_sha256"


def read_stored_bundle(model: Model) -> ModelBundle:
    """The bundle of a model-store version, verified whole before any file is parsed: the
    manifest against the store's record, every file against the manifest (`read_bundle`).

    Raises:
        BundleError: no recorded manifest hash (registered before bundles had manifests),
            or any of `read_bundle`'s reasons.
    """
    recorded = model.info.metadata.get(MANIFEST_SHA256)
    if not isinstance(recorded, str) or not recorded:
        raise BundleError(
            f"the model store records no {MANIFEST_SHA256} for it (registered before bundles "
            "were verified whole): export or import it again"
        )
    return read_bundle(model.path, recorded)


def bentoml_home() -> str:
    """The model store's home, as BentoML resolved it (BENTOML_HOME, or ~/bentoml)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.bentoml_home.get())


def stored_bundle_names() -> list[str]:
    """Names of the shiftwatch bundles in the store (labelled project=shiftwatch)."""
    import bentoml

    return sorted(
        {m.tag.name for m in bentoml.models.list() if m.info.labels.get("project") == "shiftwatch"}
    )


def missing_model_message(name: str, tag: str) -> str | None:
    """None when `tag` is in the store; else one line saying where it looked and what is there."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.models.get(tag)
        return None
    except NotFound:
        return (
            f"model {name!r} ({tag}) is not in the BentoML model store "
            f"(BENTOML_HOME={bentoml_home()}); shiftwatch bundles there: "
            f"{stored_bundle_names() or 'none'}. Run `shiftwatch export` or `shiftwatch import` "
            "first, or name stored bundles in SHIFTWATCH_PRIMARY_MODEL / SHIFTWATCH_SHADOW_MODELS"
        )
