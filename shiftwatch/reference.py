"""A bundle's reference window (`reference.parquet`): read and checked against the contract.

Apart from `shiftwatch.bundle` because it needs pandas and pyarrow, which only the monitor
and the exporter load: the serving image carries neither (tests/test_dependency_rules.py).
"""

from __future__ import annotations

import pandas as pd

from shiftwatch.bundle import BundleError, ModelBundle, reference_columns


def load_reference(bundle: ModelBundle) -> pd.DataFrame:
    """The bundle's reference rows.

    Raises:
        BundleError: the file cannot be read as Parquet, or lacks a contract column.
    """
    path = bundle.path / "reference.parquet"
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise BundleError(f"{path} cannot be read: {exc}") from exc
    absent = [c for c in reference_columns(bundle.meta.embedding_dims) if c not in frame.columns]
    if absent:
        raise BundleError(f"{path} lacks columns {absent}")
    return frame
