"""Evidently's HTML report of a window against its reference (on demand, off the hot path)."""

from __future__ import annotations

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import DriftedColumnsCount, ValueDrift

from monitoring.drift import DriftConfig


def drift_report_html(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig) -> str:
    """The same columns, methods and thresholds as the hot path, rendered by Evidently."""
    tested = {
        name: test
        for name, test in config.columns.items()
        if name in reference and name in current and current[name].notna().any()
    }
    columns = [*tested, "predicted_label"]
    numerical = [n for n, t in tested.items() if t.kind == "num"]
    categorical = [n for n, t in tested.items() if t.kind == "cat"] + ["predicted_label"]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)

    def dataset(frame: pd.DataFrame) -> Dataset:
        data = frame[columns].copy()
        for name in categorical:
            data[name] = data[name].astype(str)
        return Dataset.from_pandas(data, data_definition=definition)

    metrics = [
        ValueDrift(column=n, method=t.method, threshold=t.threshold) for n, t in tested.items()
    ]
    metrics.append(
        ValueDrift(
            column="predicted_label",
            method=config.prediction.method,
            threshold=config.prediction.threshold,
        )
    )
    metrics.append(
        DriftedColumnsCount(columns=list(tested), drift_share=config.dataset_drift_share)
    )
    snapshot = Report(metrics).run(current_data=dataset(current), reference_data=dataset(reference))
    html = snapshot.get_html_str(as_iframe=False)
    # An empty icon: the browser asks the monitor for no /favicon.ico (a 404 in its console).
    return html.replace("<head>", '<head><link rel="icon" href="data:,">', 1)
