"""Replay traffic without a server: phases, onset, the ramp, a user's file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from orchestration.replay.traffic import SCENARIOS, file_traffic, scenario_traffic
from shiftwatch.data.loader import DataError, Selection

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_has_its_length_and_onset(scenario: str) -> None:
    rows, onset = scenario_traffic(scenario, 200, seed=3)
    assert len(rows) == 200 and onset == 100
    assert not rows["shifted"][:onset].any()
    assert list(rows.columns) == ["text", "label", "domain", "shifted"]


def test_gradual_ramps_the_shift_in() -> None:
    rows, onset = scenario_traffic("gradual", 400, seed=1)
    after = rows["shifted"][onset:].to_numpy()
    first, last = after[: len(after) // 4].mean(), after[-len(after) // 4 :].mean()
    assert first < 0.25 < 0.75 < last  # about 12% and 88% for a linear ramp


@pytest.fixture
def rows_file(tmp_path: Path) -> Path:
    frame = pd.DataFrame(
        {
            "text": [f"in {i}" for i in range(30)] + [f"out {i}" for i in range(10)],
            "label": ["a", "b"] * 20,
            "domain": ["d1"] * 30 + ["d2"] * 10,
            "split": ["test"] * 30 + ["ood"] * 10,
        }
    )
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    return path


def test_file_traffic_selects_each_phase(rows_file: Path) -> None:
    before, after = Selection.parse("split=test"), Selection.parse("split = ood")
    rows, onset = file_traffic(rows_file, before, after, False, 40, seed=0)
    assert onset == 20
    assert rows["text"][:onset].str.startswith("in").all()
    assert rows["text"][onset:].str.startswith("out").all()
    # 20 before rows drawn from 30, none twice; 20 after rows from 10: each exactly twice
    assert rows["text"][:onset].is_unique
    assert rows["text"][onset:].value_counts().eq(2).all()
    control, _ = file_traffic(rows_file, before, None, False, 40, seed=0)
    assert control["text"].str.startswith("in").all() and not control["shifted"].any()
    ramp, _ = file_traffic(rows_file, before, after, True, 400, seed=0)
    shifted = ramp["shifted"][200:].to_numpy()
    assert shifted[:50].mean() < 0.3 < 0.7 < shifted[-50:].mean()
    assert (ramp["text"][200:][shifted].str.startswith("out")).all()


def test_selections_fail_clearly(rows_file: Path) -> None:
    with pytest.raises(ValueError, match="not of the form column=value"):
        Selection.parse("ood")
    with pytest.raises(
        DataError, match=r"no row has split=val; values of 'split': \['ood', 'test'\]"
    ):
        file_traffic(rows_file, Selection.parse("split=val"), None, False, 10, seed=0)
