"""A real multi-domain text dataset: docstring sections of installed, pinned packages.

Every row is the body of one docstring section, its header removed, labelled by
the section's kind (`parameters`, `returns`, ...); its domain is the package it
came from. Equivalent headers of the three docstring styles are merged: numpydoc
(`Parameters` over a dashed underline), Google (`Args:`, `Example::`), Sphinx
fields (`:param x:`, whose marker is dropped: `x: ...`) and directives
(`.. note::`). Training packages fill `train`, `val` and `test`; held-out packages
only the extra split `ood`, where a model meets a new package's vocabulary and,
for the default `nltk`, a docstring style (Sphinx fields) that no training package uses.

The packages are read, never imported: their files are listed through
`importlib.metadata` and parsed with `ast`. The same installed versions give a
byte-identical frame; `docstring_manifest` records those versions.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from shiftwatch.data.loader import content_sha256

# Section kind -> the headers (lower case) that open it in numpydoc or Google style.
SECTION_HEADERS: dict[str, tuple[str, ...]] = {
    "parameters": ("parameters", "params", "args", "arguments", "keyword args", "other parameters"),
    "returns": ("returns", "return", "yields", "yield"),
    "raises": ("raises", "raise"),
    "examples": ("examples", "example"),
    "notes": ("notes", "note"),
    "see_also": ("see also",),
    "references": ("references",),
    "attributes": ("attributes",),
    "warnings": ("warnings", "warning"),
}
_HEADER_KIND = {header: kind for kind, headers in SECTION_HEADERS.items() for header in headers}
_DIRECTIVE_KIND = {"note": "notes", "seealso": "see_also", "warning": "warnings"}
# Sphinx field -> kind. Markers that name the section (`:param`, `:returns:`) are
# dropped from the text; those that say what the field holds (`:type`) are kept.
_FIELD_KIND = {
    **dict.fromkeys(("param", "parameter", "arg", "argument", "key", "type"), "parameters"),
    **dict.fromkeys(("return", "returns", "rtype"), "returns"),
    **dict.fromkeys(("raise", "raises", "except", "exception"), "raises"),
    **dict.fromkeys(("ivar", "cvar", "var", "vartype"), "attributes"),
}
_KEPT_FIELD_NAMES = ("type", "rtype", "vartype")
# Folders never read: tests, and vendored copies of other projects (or of an old major).
SKIPPED_FOLDERS: frozenset[str] = frozenset(
    {"tests", "test", "testing", "_vendor", "vendor", "vendored", "externals", "third_party"}
    | {"array_api_compat", "array_api_extra", "_uarray", "cobyqa", "pyprima", "v1"}
)
SPLITS: tuple[str, ...] = ("train", "val", "test", "ood")

_UNDERLINE = re.compile(r"-{3,}")
_GOOGLE = re.compile(r"(?P<header>[A-Za-z][A-Za-z ]*?)\s*::?(?:\s+(?P<rest>\S.*))?")
_DIRECTIVE = re.compile(r"\.\.\s+(?P<name>[a-z]+)::(?:\s+(?P<rest>\S.*))?")
_FIELD = re.compile(r":(?P<name>[a-z]+)(?P<arg>[^:]*):(?:\s+(?P<rest>\S.*))?")


@dataclass(frozen=True)
class DocstringConfig:
    """Which packages, section kinds and sizes the docstring dataset is built from."""

    seed: int = 0  # sampling and split assignment are pure functions of this seed
    # Distribution names: numpydoc science packages plus two Google-style ones.
    train_packages: tuple[str, ...] = (
        "numpy",
        "pandas",
        "scipy",
        "scikit-learn",
        "torch",
        "pydantic",
    )
    # Only in `ood`: statsmodels (numpydoc, econometrics), nltk (Sphinx fields, NLP).
    held_out_packages: tuple[str, ...] = ("statsmodels", "nltk")
    # Kinds kept (keys of SECTION_HEADERS). `raises`, `attributes`, `references` and
    # `warnings` are left out by default: 2-20x rarer than `parameters` in most packages.
    classes: tuple[str, ...] = ("parameters", "returns", "examples", "notes", "see_also")
    # Cap per (package, class), before splitting. With max_words, sized so the paper profile
    # (3 variants x 5 seeds x up to 8 epochs) trains in under 30 min on 2 cores: ~10.5 s an
    # epoch at 2,898 training rows, measured (at 500 rows and 128 words: 331 s an epoch).
    max_rows_per_domain_class: int = 150
    min_words: int = 8  # shorter section bodies are dropped
    max_words: int = 32  # longer bodies are clipped to their first max_words words
    val_fraction: float = 0.1  # of each training (package, class) cell
    test_fraction: float = 0.15  # of each training (package, class) cell; the rest is train

    def __post_init__(self) -> None:
        for name in ("train_packages", "held_out_packages", "classes"):
            if not isinstance(getattr(self, name), tuple):
                raise ValueError(f"DocstringConfig.{name} must be a tuple of names")
        if self.seed < 0:
            raise ValueError("DocstringConfig.seed must be >= 0")
        if not self.train_packages:
            raise ValueError("DocstringConfig.train_packages must name at least one package")
        packages = self.train_packages + self.held_out_packages
        if len(set(packages)) != len(packages):
            raise ValueError("DocstringConfig: a package is listed twice (train or held out)")
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError("DocstringConfig.classes must be non-empty, without repeats")
        unknown = sorted(set(self.classes) - set(SECTION_HEADERS))
        if unknown:
            raise ValueError(f"DocstringConfig.classes: unknown section kinds {unknown}")
        if self.max_rows_per_domain_class < 1:
            raise ValueError("DocstringConfig.max_rows_per_domain_class must be >= 1")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError("DocstringConfig: need 1 <= min_words <= max_words")
        if min(self.val_fraction, self.test_fraction) <= 0 or (
            self.val_fraction + self.test_fraction >= 1
        ):
            raise ValueError("DocstringConfig: need val/test fractions > 0 summing to < 1")


@dataclass(frozen=True)
class PackageScan:
    """What reading one installed package yielded."""

    package: str
    version: str
    sections: tuple[tuple[str, str], ...]  # (kind, raw body), in file then source order
    files_read: int  # .py files parsed
    files_unparsable: int  # .py files that did not decode or parse
    files_excluded: int  # .py files in SKIPPED_FOLDERS


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _header(line: str) -> tuple[str | None, re.Match[str] | None]:
    """The kind a Sphinx field, directive or Google header line opens (or None)."""
    stripped = line.strip()
    if match := _FIELD.fullmatch(stripped):
        return _FIELD_KIND.get(match["name"]), match
    if match := _DIRECTIVE.fullmatch(stripped):
        return _DIRECTIVE_KIND.get(match["name"]), match
    if match := _GOOGLE.fullmatch(stripped):
        return _HEADER_KIND.get(match["header"].lower()), match
    return None, None


def docstring_sections(doc: str) -> list[tuple[str, str]]:
    """Split a cleaned docstring into (kind, body) pairs, headers removed.

    A numpydoc section runs to the next underlined title. A Google header, directive
    or Sphinx field runs over the lines indented deeper than it (after an inline
    `Note: text`, also over the rest of its paragraph). Lines inside a numpydoc
    section are not searched again, so a `.. note::` in `Parameters` stays there.
    All Sphinx fields of one kind in a docstring form one section.
    """
    lines = doc.splitlines()
    claimed = [False] * len(lines)
    found: list[tuple[int, str, str]] = []  # (first line, kind, body)
    titles = [
        i
        for i in range(len(lines) - 1)
        if lines[i].strip() and _UNDERLINE.fullmatch(lines[i + 1].strip())
    ]
    for n, i in enumerate(titles):
        end = titles[n + 1] if n + 1 < len(titles) else len(lines)
        claimed[i:end] = [True] * (end - i)
        if kind := _HEADER_KIND.get(lines[i].strip().lower()):
            found.append((i, kind, "\n".join(lines[i + 2 : end])))

    fields: dict[str, tuple[int, list[str]]] = {}  # kind -> (first line, bodies)
    i = 0
    while i < len(lines):
        kind, match = (None, None) if claimed[i] else _header(lines[i])
        if kind is None or match is None:
            i += 1
            continue
        rest = match["rest"] or ""
        end = i + 1
        if match.re is _FIELD:
            name = match["name"] if match["name"] in _KEPT_FIELD_NAMES else ""
            prefix = " ".join(part for part in (name, match["arg"].strip()) if part)
            rest = f"{prefix}: {rest}" if prefix else rest
        elif rest:
            while end < len(lines) and lines[end].strip() and _header(lines[end])[0] is None:
                end += 1
        header_indent = _indent(lines[i])
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > header_indent):
            end += 1
        body = "\n".join([rest, *lines[i + 1 : end]])
        if match.re is _FIELD:
            fields.setdefault(kind, (i, []))[1].append(body)
        else:
            found.append((i, kind, body))
        i = end
    found.extend((first, kind, "\n".join(bodies)) for kind, (first, bodies) in fields.items())
    return [(kind, body) for _, kind, body in sorted(found)]


def _docstring_nodes(tree: ast.Module) -> list[ast.AST]:
    """The module and every class and function in it, in source order."""
    nodes: list[ast.AST] = [tree]
    pending = list(reversed(tree.body))
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            nodes.append(node)
        # Statements only (not ast.walk): definitions never sit inside expressions.
        children = [
            child
            for field in ("body", "orelse", "finalbody", "handlers", "cases")
            for child in getattr(node, field, [])
            if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case)
        ]
        pending.extend(reversed(children))
    return nodes


def _distribution(package: str) -> metadata.Distribution:
    try:
        return metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise ValueError(f"package {package!r} is not installed in this environment") from None


def scan_package(package: str) -> PackageScan:
    """Read every docstring section of an installed distribution, without importing it.

    Raises:
        ValueError: if no distribution of that name is installed, or it lists no files.
    """
    distribution = _distribution(package)
    if distribution.files is None:
        raise ValueError(f"package {package!r} does not list its files (no RECORD)")
    listed = sorted(
        str(f) for f in distribution.files if str(f).endswith(".py") and ".." not in f.parts
    )
    kept = [f for f in listed if not SKIPPED_FOLDERS.intersection(Path(f).parts[:-1])]
    sections: list[tuple[str, str]] = []
    unparsable = 0
    for relative in kept:
        try:
            tree = ast.parse(Path(str(distribution.locate_file(relative))).read_bytes())
        except (SyntaxError, ValueError, OSError):
            # ValueError: null bytes or an undecodable file; OSError: listed but absent.
            unparsable += 1
            continue
        for node in _docstring_nodes(tree):
            if doc := ast.get_docstring(node, clean=True):
                sections.extend(docstring_sections(doc))
    return PackageScan(
        package=package,
        version=distribution.version,
        sections=tuple(sections),
        files_read=len(kept) - unparsable,
        files_unparsable=unparsable,
        files_excluded=len(listed) - len(kept),
    )


def _row_text(body: str, config: DocstringConfig) -> str | None:
    words = body.split()
    return " ".join(words[: config.max_words]) if len(words) >= config.min_words else None


def _cell_seed(package: str, kind: str) -> int:
    # From names, not positions: a cell's sample does not move when the package list does.
    return int.from_bytes(hashlib.sha256(f"{package}\0{kind}".encode()).digest()[:8], "little")


def _cell_splits(n: int, config: DocstringConfig) -> list[str]:
    """Split names for a training cell of n rows: val, test, then train."""
    n_val, n_test = round(n * config.val_fraction), round(n * config.test_fraction)
    if n >= 3:  # every split gets a row of each cell that can spare one
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    return ["val"] * n_val + ["test"] * n_test + ["train"] * (n - n_val - n_test)


def build_docstring_dataset(config: DocstringConfig | None = None) -> pd.DataFrame:
    """Build the docstring-section dataset from the installed packages.

    A text found under two kinds is dropped; a text found more than once under one
    kind is kept once (first package in config order, then file order), so no text
    is in two splits. Each (package, class) cell is shuffled by its own seeded
    generator, capped, and, for training packages, cut into val, test and train.

    Args:
        config: packages, classes and sizes; the defaults when None.

    Returns:
        One frame with columns `text` (whitespace-normalised section body), `label`
        (section kind), `domain` (package name) and `split` (`train`, `val`, `test`,
        `ood`), each split shuffled. `frame.attrs` records the package versions, file
        counts and deduplication counts for `docstring_manifest`.

    Raises:
        ValueError: if a configured package is not installed.
    """
    config = config or DocstringConfig()
    packages = config.train_packages + config.held_out_packages
    for package in packages:  # fail before the slow reading, naming the package
        _distribution(package)
    scans = [scan_package(package) for package in packages]
    found = [
        (scan.package, kind, text)
        for scan in scans
        for kind, body in scan.sections
        if kind in config.classes and (text := _row_text(body, config)) is not None
    ]
    kinds: dict[str, set[str]] = {}
    for _, kind, text in found:
        kinds.setdefault(text, set()).add(kind)
    cells: dict[tuple[str, str], list[str]] = {}
    taken: set[str] = set()
    for package, kind, text in found:
        if len(kinds[text]) == 1 and text not in taken:
            taken.add(text)
            cells.setdefault((package, kind), []).append(text)

    rows: list[tuple[str, str, str, str]] = []
    for package in packages:
        for kind in config.classes:
            texts = cells.get((package, kind), [])
            order = np.random.default_rng([config.seed, _cell_seed(package, kind)]).permutation(
                len(texts)
            )
            picked = [texts[i] for i in order[: config.max_rows_per_domain_class]]
            held_out = package in config.held_out_packages
            splits = ["ood"] * len(picked) if held_out else _cell_splits(len(picked), config)
            rows.extend(
                (text, kind, package, split) for text, split in zip(picked, splits, strict=True)
            )
    frame = pd.DataFrame(rows, columns=["text", "label", "domain", "split"])
    parts = []
    for index, split in enumerate(SPLITS):
        part = frame[frame["split"] == split]
        shuffle = np.random.default_rng([config.seed, index]).permutation(len(part))
        parts.append(part.iloc[shuffle])
    frame = pd.concat(parts, ignore_index=True)
    frame.attrs["packages"] = {
        scan.package: {
            "version": scan.version,
            "files_read": scan.files_read,
            "files_unparsable": scan.files_unparsable,
            "files_excluded": scan.files_excluded,
        }
        for scan in scans
    }
    frame.attrs["texts"] = {
        "sections_in_range": len(found),  # of the configured kinds, >= min_words
        "ambiguous_dropped": sum(1 for kind_set in kinds.values() if len(kind_set) > 1),
        "unique_kept": len(taken),
    }
    return frame


def _counts(frame: pd.DataFrame, by: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (key, label), count in sorted(frame.groupby([by, "label"]).size().items()):
        out.setdefault(str(key), {})[str(label)] = int(count)
    return out


def docstring_manifest(frame: pd.DataFrame, config: DocstringConfig) -> dict:
    """What a built docstring dataset is: config, sizes, classes, sources, content hash.

    Raises:
        ValueError: if `frame` lacks the record that `build_docstring_dataset` attaches.
    """
    if "packages" not in frame.attrs or "texts" not in frame.attrs:
        raise ValueError("frame.attrs lacks the build record: pass build_docstring_dataset's frame")
    packages = frame.attrs["packages"]
    return {
        "generator": "shiftwatch.data.docstrings",
        "input": "text",
        # Lists, not tuples: the manifest reads back from JSON equal to itself.
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "sizes": {split: int((frame["split"] == split).sum()) for split in SPLITS},
        "classes": sorted(config.classes),
        "train_domains": list(config.train_packages),
        "held_out_domains": list(config.held_out_packages),
        "package_versions": {name: info["version"] for name, info in packages.items()},
        "files": {
            name: {key: value for key, value in info.items() if key != "version"}
            for name, info in packages.items()
        },
        "texts": dict(frame.attrs["texts"]),
        "rows_per_split_class": _counts(frame, "split"),
        "rows_per_domain_class": _counts(frame, "domain"),
        "content_sha256": content_sha256(frame),
    }
