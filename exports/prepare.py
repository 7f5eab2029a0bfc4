"""Bundles for a dataset, ready to serve: train the profile's seed-0 runs and export them
under the given names, reusing finished runs and bundles that still match.

A finished seed-0 run on the same dataset content is reused, whatever profile trained it
(a `make reproduce` run is kept, not overwritten by a quicker one); a bundle is reused
when it was exported from that run's checkpoint. Whatever is (re)made
is registered in the BentoML model store (once: an unchanged bundle keeps its version).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from exports.bundle_export import export_bundle
from exports.config import ExportConfig
from exports.register import ensure_registered
from shiftwatch.bundle import BundleError, ModelBundle, probability_columns, read_bundle
from shiftwatch.data import Dataset
from shiftwatch.manifest import file_sha256
from shiftwatch.reference import load_reference
from training.config import Profile
from training.train import train_run


def finished_run(run_dir: Path, dataset: Dataset) -> bool:
    """A complete run on the same data."""
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        (run_dir / "checkpoint.pt").exists()
        and (run_dir / "metrics.json").exists()
        and config["data"]["content_sha256"] == dataset.content_sha256
    )


def current_bundle(models_dir: Path, name: str, run_dir: Path) -> ModelBundle | None:
    """The bundle `name` if it was exported from this run's checkpoint, else None."""
    try:
        bundle = read_bundle(models_dir / name)
    except BundleError:
        return None
    source = bundle.meta.source
    fresh = source.get("checkpoint_sha256") == file_sha256(run_dir / "checkpoint.pt")
    # A bundle from before the calibration columns (label-free estimates) is exported again.
    calibrated = set(probability_columns(len(bundle.meta.labels))) <= set(
        load_reference(bundle).columns
    )
    return bundle if fresh and calibrated else None


def prepare_bundles(
    dataset: Dataset,
    profile: Profile,
    runs_dir: Path,
    models_dir: Path,
    names: dict[str, str],
    export_config: ExportConfig,
    on_step: Callable[[str], None] = lambda _: None,
    on_run: Callable[[str, int], Callable[[dict], None] | None] | None = None,
) -> dict[str, tuple[ModelBundle, str]]:
    """variant -> (bundle, store tag) for every variant in `names` (variant -> bundle name)."""
    train = replace(profile.train, seed=0)
    prepared = {}
    for variant, name in names.items():
        run_dir = runs_dir / dataset.slug / variant / "0"
        if finished_run(run_dir, dataset):
            on_step(f"{variant}: reusing the run in {run_dir}")
        else:
            on_step(f"training {variant} ({profile.name} profile)")
            train_run(
                variant, dataset, train, run_dir, on_epoch=on_run(variant, 0) if on_run else None
            )
        bundle = current_bundle(models_dir, name, run_dir)
        if bundle is None:
            bundle = export_bundle(
                run_dir,
                models_dir,
                export_config,
                name=name,
                dataset=dataset,
                on_step=lambda s, n=name: on_step(f"{n}: {s}"),
            )
        prepared[variant] = (bundle, ensure_registered(bundle))
    return prepared
