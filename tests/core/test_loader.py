import json

import pandas as pd
import pytest

from shiftwatch.data import (
    CLASS_NAMES,
    SHIFT_SETS,
    DataError,
    load_dataset,
    load_sequences,
    write_default_dataset,
)
from shiftwatch.data.synthetic import content_sha256

pytestmark = pytest.mark.unit

TOKENS = [["a", "b"], ["c"], ["d", "e", "f"], ["g"]]
TEXTS = ["a b", "c", "d e f", "g"]
LABELS = ["pos", "neg", "pos", "neg"]
SPLITS = ["train", "train", "val", "test"]


def _rows(tokens_as: str = "list", column: str = "tokens", split: bool = True) -> pd.DataFrame:
    values = TOKENS if tokens_as == "list" else [" ".join(t) for t in TOKENS]
    frame = pd.DataFrame({column: values, "label": LABELS, "domain": ["d1", "d1", "d2", "d2"]})
    if split:
        frame["split"] = SPLITS
    return frame


def _write(frame: pd.DataFrame, path) -> None:
    if path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


@pytest.mark.parametrize(
    ("suffix", "tokens_as", "column"),
    [
        (".jsonl", "list", "tokens"),
        (".jsonl", "string", "tokens"),
        (".jsonl", "string", "text"),
        (".csv", "string", "tokens"),
        (".csv", "string", "text"),
        (".parquet", "list", "tokens"),
        (".parquet", "string", "tokens"),
        (".parquet", "string", "text"),
    ],
)
def test_formats_with_split(tmp_path, suffix, tokens_as, column):
    path = tmp_path / f"data{suffix}"
    _write(_rows(tokens_as, column), path)
    frame, input_kind = load_sequences(path)
    assert input_kind == column
    assert list(frame.columns) == ["text", "label", "domain", "split"]
    assert frame["text"].tolist() == TEXTS
    assert frame["label"].tolist() == LABELS
    assert frame["domain"].tolist() == ["d1", "d1", "d2", "d2"]
    assert frame["split"].tolist() == SPLITS


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_without_split_is_seeded_80_10_10(tmp_path, suffix):
    n = 200
    frame = pd.DataFrame(
        {"text": [f"w{i} x" for i in range(n)], "label": ["a", "b"] * (n // 2), "domain": "d"}
    )
    path = tmp_path / f"data{suffix}"
    _write(frame, path)
    first, _ = load_sequences(path, seed=3)
    assert first["split"].tolist() == load_sequences(path, seed=3)[0]["split"].tolist()
    assert first["split"].tolist() != load_sequences(path, seed=4)[0]["split"].tolist()
    shares = first["split"].value_counts(normalize=True)
    assert set(shares.index) == {"train", "val", "test"}
    assert shares["train"] == pytest.approx(0.8, abs=0.08)
    assert first["text"][5] == "w5 x"


def test_list_tokens_drop_blank_entries(tmp_path):
    path = tmp_path / "data.jsonl"
    frame = _rows()
    frame.at[0, "tokens"] = ["a", " ", "b", "", "c\td"]
    _write(frame, path)
    assert load_sequences(path)[0]["text"][0] == "a b c d"


def test_text_is_kept_as_written_and_tokens_are_rejoined(tmp_path):
    path = tmp_path / "data.jsonl"
    frame = _rows("string", "text")
    frame.at[0, "text"] = "  Hello,\n  World!  "
    _write(frame, path)
    assert load_sequences(path)[0]["text"][0] == "Hello,\n  World!"
    frame = _rows("string", "tokens")
    frame.at[0, "tokens"] = "  Hello,\n  World!  "
    _write(frame, path)
    assert load_sequences(path)[0]["text"][0] == "Hello, World!"


def test_labels_and_splits_are_stripped(tmp_path):
    path = tmp_path / "data.csv"
    frame = _rows("string")
    frame["label"] = [" pos", "neg ", "pos", "neg"]
    frame["split"] = ["train ", "train", " val", "test"]
    _write(frame, path)
    loaded, _ = load_sequences(path)
    assert loaded["label"].tolist() == LABELS
    assert loaded["split"].tolist() == SPLITS


def _broken(change) -> pd.DataFrame:
    frame = _rows()
    change(frame)
    return frame


def _set(column, row, value):
    def change(frame):
        frame[column] = frame[column].astype(object)
        frame.at[row, column] = value

    return change


@pytest.mark.parametrize(
    ("suffix", "change", "message"),
    [
        (
            ".jsonl",
            lambda f: f.drop(columns="tokens", inplace=True),
            "column 'tokens' (or 'text') is missing",
        ),
        (".jsonl", lambda f: f.drop(columns="label", inplace=True), "column 'label' is missing"),
        (".jsonl", lambda f: f.drop(columns="domain", inplace=True), "column 'domain' is missing"),
        (".csv", lambda f: f.drop(columns="domain", inplace=True), "column 'domain' is missing"),
        (".jsonl", _set("tokens", 2, []), "row 2: column 'tokens' is empty"),
        (".jsonl", _set("tokens", 1, "   "), "row 1: column 'tokens' is empty"),
        (".csv", _set("tokens", 3, ""), "row 3: column 'tokens' is empty"),
        (".parquet", _set("tokens", 0, []), "row 0: column 'tokens' is empty"),
        (".jsonl", _set("tokens", 1, [1, 2]), "row 1: column 'tokens' must be"),
        (".jsonl", _set("label", 1, ""), "row 1: column 'label' is empty"),
        (".jsonl", _set("label", 2, None), "row 2: column 'label' is empty"),
        (".csv", _set("label", 3, " "), "row 3: column 'label' is empty"),
        (".jsonl", _set("domain", 0, ""), "row 0: column 'domain' is empty"),
        (".jsonl", _set("split", 1, ""), "row 1: column 'split' is empty"),
        (".jsonl", _set("label", 3, "unseen"), "column 'label' has values absent from the train"),
        (".jsonl", _set("split", 2, "train"), "column 'split' has no rows for ['val']"),
    ],
)
def test_invalid_data_names_the_column(tmp_path, suffix, change, message):
    path = tmp_path / f"data{suffix}"
    _write(_broken(change), path)
    with pytest.raises(DataError) as raised:
        load_sequences(path)
    assert message in str(raised.value)


def test_empty_text_column_is_named(tmp_path):
    path = tmp_path / "data.jsonl"
    frame = _rows("string", "text")
    frame.at[1, "text"] = ""
    _write(frame, path)
    with pytest.raises(DataError, match="row 1: column 'text' is empty"):
        load_sequences(path)


def test_unseen_label_allowed_when_in_train(tmp_path):
    # the same extra label in train and test is fine; only test-only labels are rejected
    path = tmp_path / "data.jsonl"
    frame = _rows()
    frame["label"] = ["pos", "new", "pos", "new"]
    _write(frame, path)
    assert load_sequences(path)[0]["label"].tolist() == ["pos", "new", "pos", "new"]


def test_unsupported_extension(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("a b\n")
    with pytest.raises(DataError, match="unsupported format '.txt'"):
        load_sequences(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_sequences(tmp_path / "absent.csv")


def test_unreadable_file(tmp_path):
    path = tmp_path / "data.parquet"
    path.write_text("not parquet")
    with pytest.raises(DataError, match="cannot be read as parquet"):
        load_sequences(path)


def test_no_rows(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("tokens,label,domain\n")
    with pytest.raises(DataError, match="no rows"):
        load_sequences(path)


def test_generated_folder_round_trip(tmp_path, tiny_data_config):
    meta = write_default_dataset(tmp_path, tiny_data_config)
    assert json.loads((tmp_path / "manifest.json").read_text()) == meta
    dataset = load_dataset(tmp_path)
    assert dataset.content_sha256 == meta["content_sha256"]
    assert content_sha256(dataset.frame) == meta["content_sha256"]
    assert dataset.labels == CLASS_NAMES
    assert dataset.source == str(tmp_path)
    assert dataset.input_kind == "tokens"
    assert dataset.eval_sets == ["test", *SHIFT_SETS]
    assert len(dataset.split("train")) == meta["sizes"]["train"]
    # embedded and written-then-read are the same rows
    assert load_dataset(None, tiny_data_config).content_sha256 == meta["content_sha256"]


def test_tampered_folder_raises(tmp_path, tiny_data_config):
    write_default_dataset(tmp_path, tiny_data_config)
    frame = pd.read_parquet(tmp_path / "dataset.parquet")
    frame.loc[0, "label"] = "first_a" if frame.loc[0, "label"] != "first_a" else "topic_a"
    frame.to_parquet(tmp_path / "dataset.parquet", index=False)
    with pytest.raises(DataError, match="does not match its manifest"):
        load_dataset(tmp_path)


def test_folder_without_manifest_raises(tmp_path):
    with pytest.raises(DataError, match="manifest.json"):
        load_dataset(tmp_path)


def test_user_file_dataset(tmp_path):
    path = tmp_path / "data.jsonl"
    _write(_rows(), path)
    dataset = load_dataset(path)
    assert dataset.labels == ("neg", "pos")  # sorted train labels
    assert dataset.eval_sets == ["test"]
    assert dataset.input_kind == "tokens"
    assert dataset.content_sha256 == content_sha256(load_sequences(path)[0])
