"""Reading the BentoML model store: which shiftwatch bundles it holds (torch-free; BentoML
is imported on use). Registering a bundle is `exports.register`'s job."""

from __future__ import annotations


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
