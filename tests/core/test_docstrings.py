import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, replace
from importlib import metadata

import pandas as pd
import pytest

from shiftwatch.data.docstrings import (
    SPLITS,
    DocstringConfig,
    build_docstring_dataset,
    docstring_manifest,
    docstring_sections,
)
from shiftwatch.data.loader import content_sha256

# Small packages (about two seconds to read all three): Google style, two fields.
SMALL = DocstringConfig(
    train_packages=("rich", "pydantic"),
    held_out_packages=("bentoml",),
    classes=("parameters", "returns", "examples"),
    max_rows_per_domain_class=60,
)
# A header as written (`Args:`, numpydoc `Returns -------`, `:param`). Case matters:
# a parameter may be called `args`, a header is never lower case.
HEADER_AT_START = re.compile(
    r"^(Parameters|Args|Arguments|Returns?|Yields?|Examples?|Notes?|See Also)\s*(:|-{3,})"
    r"|^:(param|returns?)\b"
)


@pytest.fixture(scope="module")
def small_frame() -> pd.DataFrame:
    return build_docstring_dataset(SMALL)


@pytest.mark.unit
def test_numpydoc_sections_lose_their_headers():
    doc = (
        "Summary.\n\nParameters\n----------\nx : int\n    The x.\n\n    .. note:: inner\n\n"
        "Returns\n-------\nout : float\n    The result.\n\nMethods\n-------\nfit\n"
    )
    assert docstring_sections(doc) == [
        ("parameters", "x : int\n    The x.\n\n    .. note:: inner\n"),
        ("returns", "out : float\n    The result.\n"),
    ]


@pytest.mark.unit
def test_google_sections_end_at_dedent_and_inline_notes_take_their_paragraph():
    doc = (
        "Summary.\n\nNote: a note that\ngoes on.\n\nArgs:\n    x (int): the x.\n        More.\n"
        "Returns: A thing\n    that is long.\nRaises:\n    ValueError: when bad.\n\n"
        "Example::\n\n    >>> f(1)\n"
    )
    assert docstring_sections(doc) == [
        ("notes", "a note that\ngoes on.\n"),
        ("parameters", "\n    x (int): the x.\n        More."),
        ("returns", "A thing\n    that is long."),
        ("raises", "\n    ValueError: when bad.\n"),
        ("examples", "\n\n    >>> f(1)"),
    ]


@pytest.mark.unit
def test_sphinx_fields_drop_the_marker_and_group_by_kind():
    doc = (
        "Summary.\n\n:param a: the a\n:type a: int\n:param b: the b\n:returns: the sum\n:rtype: int"
    )
    assert docstring_sections(doc) == [
        ("parameters", "a: the a\ntype a: int\nb: the b"),
        ("returns", "the sum\nrtype: int"),
    ]


@pytest.mark.unit
def test_directives_are_sections():
    doc = "Summary.\n\n.. note:: First line\n   second line.\n\n.. seealso:: :func:`g`"
    assert docstring_sections(doc) == [
        ("notes", "First line\n   second line.\n"),
        ("see_also", ":func:`g`"),
    ]


@pytest.mark.unit
def test_columns_splits_and_classes(small_frame):
    assert list(small_frame.columns) == ["text", "label", "domain", "split"]
    assert sorted(small_frame["split"].unique()) == sorted(SPLITS)
    for split in SPLITS:
        labels = small_frame.loc[small_frame["split"] == split, "label"]
        assert sorted(labels.unique()) == sorted(SMALL.classes), split


@pytest.mark.unit
def test_held_out_packages_only_in_ood(small_frame):
    ood = small_frame["split"] == "ood"
    assert set(small_frame.loc[ood, "domain"]) == set(SMALL.held_out_packages)
    assert set(small_frame.loc[~ood, "domain"]) == set(SMALL.train_packages)


@pytest.mark.unit
def test_no_text_twice_and_sizes_within_config(small_frame):
    assert small_frame["text"].is_unique
    words = small_frame["text"].str.split().str.len()
    assert words.min() >= SMALL.min_words
    assert words.max() <= SMALL.max_words
    assert (small_frame["text"] == small_frame["text"].str.split().str.join(" ")).all()
    cells = small_frame.groupby(["domain", "label"]).size()
    assert cells.max() <= SMALL.max_rows_per_domain_class


@pytest.mark.unit
def test_texts_do_not_start_with_a_section_header(small_frame):
    leaked = [t for t in small_frame["text"] if HEADER_AT_START.search(t)]
    assert leaked == []


@pytest.mark.unit
def test_same_config_same_frame(small_frame):
    again = build_docstring_dataset(SMALL)
    pd.testing.assert_frame_equal(again, small_frame)
    assert content_sha256(again) == content_sha256(small_frame)


@pytest.mark.integration
def test_same_hash_under_another_string_hash_seed(small_frame):
    code = (
        "from shiftwatch.data.docstrings import *\n"
        "from shiftwatch.data.loader import content_sha256\n"
        f"config = DocstringConfig(**{asdict(SMALL)!r})\n"
        "print(content_sha256(build_docstring_dataset(config)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert result.stdout.strip() == content_sha256(small_frame)


@pytest.mark.unit
def test_other_seed_other_sample(small_frame):
    other = build_docstring_dataset(replace(SMALL, seed=1))
    assert content_sha256(other) != content_sha256(small_frame)
    assert set(other["text"]) != set(small_frame["text"])


@pytest.mark.unit
def test_manifest_records_sources_and_counts(small_frame):
    meta = docstring_manifest(small_frame, SMALL)
    assert json.loads(json.dumps(meta)) == meta
    assert sum(meta["sizes"].values()) == len(small_frame)
    assert meta["classes"] == sorted(SMALL.classes)
    assert meta["held_out_domains"] == ["bentoml"]
    assert meta["package_versions"] == {
        name: metadata.version(name) for name in ("rich", "pydantic", "bentoml")
    }
    assert all(counts["files_read"] > 0 for counts in meta["files"].values())
    assert meta["rows_per_split_class"]["ood"] == {
        label: int(n)
        for label, n in small_frame[small_frame["split"] == "ood"]["label"].value_counts().items()
    }
    assert meta["content_sha256"] == content_sha256(small_frame)
    with pytest.raises(ValueError, match="build record"):
        docstring_manifest(pd.DataFrame(small_frame.to_dict("list")), SMALL)


@pytest.mark.unit
def test_package_not_installed_is_named():
    config = replace(SMALL, held_out_packages=("no-such-package-shiftwatch",))
    with pytest.raises(ValueError, match="'no-such-package-shiftwatch' is not installed"):
        build_docstring_dataset(config)


@pytest.mark.unit
@pytest.mark.parametrize(
    "change",
    [
        {"seed": -1},
        {"train_packages": ()},
        {"train_packages": "rich"},
        {"held_out_packages": ("rich",)},
        {"classes": ("parameters", "parameters")},
        {"classes": ("summary",)},
        {"max_rows_per_domain_class": 0},
        {"min_words": 0},
        {"min_words": 20, "max_words": 10},
        {"val_fraction": 0.0},
        {"val_fraction": 0.5, "test_fraction": 0.5},
    ],
)
def test_bad_config_rejected(change):
    with pytest.raises(ValueError, match="DocstringConfig"):
        replace(SMALL, **change)
