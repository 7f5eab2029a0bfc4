"""What a tokenizer.json may ask of the service: its size, its truncation, its text rules.

An imported tokenizer.json is code in all but name: its normaliser runs on every request
before any limit of ours sees the result. A `Replace("a" -> 10,000 x "x")` normaliser once
turned a 5,050-character request into 1.6 GB of memory and 3.2 s. So a tokenizer is
accepted only within these limits, at import and again whenever a bundle is read:

- the file is at most `MAX_TOKENIZER_BYTES` (read only after its size is known);
- it truncates at most at `MAX_POSITIONS` token ids;
- its normaliser and pre-tokeniser are built only from the types below: those of the
  tokenizers shiftwatch trains (BertNormalizer, BertPreTokenizer, WhitespaceSplit) and
  of the common Hugging Face classifiers (BERT, DistilBERT, RoBERTa, DeBERTa, ELECTRA,
  ALBERT, XLM-R, ModernBERT), with every parameter that could lengthen text bounded.

Not covered: a `Precompiled` normaliser (the SentencePiece table of ALBERT, XLM-R,
DeBERTa-v3) is a binary map that could in principle map a character to a longer string,
as NFKC does by design (at most 18 characters for one). It is allowed because those
models need it; the file-size cap bounds the table.
"""

from __future__ import annotations

from typing import Any

# The largest common classifier tokenizer (XLM-R's 250k-piece Unigram) is about 9 MB.
MAX_TOKENIZER_BYTES = 16 * 1024 * 1024
# The longest positional limit of a common encoder classifier (ModernBERT: 8192); BERT's 512.
MAX_POSITIONS = 8192
# A Sequence of more steps than this (or nested deeper) is no tokenizer anyone trained.
MAX_SEQUENCE_STEPS = 8
MAX_DEPTH = 3
# Characters a Prepend normaliser may add (SentencePiece-style models add "▁").
MAX_PREPEND_CHARS = 4
# Regex patterns a Replace normaliser may use: SentencePiece models collapse runs of spaces.
REPLACE_REGEXES = (" {2,}",)

# Types whose parameters cannot lengthen text beyond a constant factor per character.
NORMALIZERS = (
    "BertNormalizer",
    "Lowercase",
    "NFC",
    "NFD",
    "NFKC",
    "NFKD",
    "Nmt",
    "Precompiled",
    "Strip",
    "StripAccents",
)
PRE_TOKENIZERS = (
    "BertPreTokenizer",
    "ByteLevel",
    "CharDelimiterSplit",
    "Digits",
    "Metaspace",
    "Punctuation",
    "UnicodeScripts",
    "Whitespace",
    "WhitespaceSplit",
)


class TokenizerLimitError(ValueError):
    """A tokenizer.json beyond what shiftwatch serves; the message names the field and limit."""


def check_max_length(max_length: Any, field: str) -> None:
    """A truncation length within MAX_POSITIONS token ids."""
    if isinstance(max_length, int) and max_length > MAX_POSITIONS:
        raise TokenizerLimitError(
            f"{field} {max_length} is over {MAX_POSITIONS} token ids, the longest positional "
            "limit shiftwatch serves (MAX_POSITIONS)"
        )


def check_tokenizer_json(raw: dict) -> None:
    """A parsed tokenizer.json within the limits above.

    Raises:
        TokenizerLimitError: naming the field (e.g. `normalizer.normalizers[1]`) and the limit.
    """
    check_max_length((raw.get("truncation") or {}).get("max_length"), "truncation.max_length")
    if raw.get("normalizer") is not None:
        _check_step(raw["normalizer"], "normalizer", "normalizers", _check_normalizer, 0)
    if raw.get("pre_tokenizer") is not None:
        _check_step(raw["pre_tokenizer"], "pre_tokenizer", "pretokenizers", _check_pre_tokenizer, 0)


def _check_step(step: Any, field: str, members: str, check, depth: int) -> None:
    """One normaliser or pre-tokeniser, or a Sequence of them (bounded in length and depth)."""
    if not isinstance(step, dict):
        raise TokenizerLimitError(f"{field} is not an object")
    if step.get("type") != "Sequence":
        check(step, field)
        return
    steps = step.get(members)
    if not isinstance(steps, list) or len(steps) > MAX_SEQUENCE_STEPS or depth >= MAX_DEPTH:
        raise TokenizerLimitError(
            f"{field}: a Sequence holds at most {MAX_SEQUENCE_STEPS} steps, nested at most "
            f"{MAX_DEPTH} deep"
        )
    for i, member in enumerate(steps):
        _check_step(member, f"{field}.{members}[{i}]", members, check, depth + 1)


def _check_normalizer(step: dict, field: str) -> None:
    kind = step.get("type")
    if kind in NORMALIZERS:
        return
    if kind == "Prepend":
        if len(str(step.get("prepend", ""))) > MAX_PREPEND_CHARS:
            raise TokenizerLimitError(
                f"{field}: Prepend adds at most {MAX_PREPEND_CHARS} characters"
            )
        return
    if kind == "Replace":
        _check_replace(step, field)
        return
    raise TokenizerLimitError(
        f"{field}: normaliser type {kind!r} is not one shiftwatch serves; allowed: "
        f"{[*NORMALIZERS, 'Prepend', 'Replace', 'Sequence']}"
    )


def _check_replace(step: dict, field: str) -> None:
    """A Replace never lengthens text: a literal is replaced by at most as many characters,
    and a regex (which could match the empty string) only from REPLACE_REGEXES, by at
    most one character."""
    pattern, content = step.get("pattern") or {}, str(step.get("content", ""))
    literal, regex = pattern.get("String"), pattern.get("Regex")
    if isinstance(literal, str) and literal and len(content) <= len(literal):
        return
    if regex in REPLACE_REGEXES and len(content) <= 1:
        return
    raise TokenizerLimitError(
        f"{field}: Replace of {pattern} by {len(content)} characters could lengthen text; "
        f"allowed: a literal replaced by at most as many characters, or a regex from "
        f"{list(REPLACE_REGEXES)} replaced by at most one"
    )


def _check_pre_tokenizer(step: dict, field: str) -> None:
    kind = step.get("type")
    # Split with a regex runs a user-given pattern on every request; a literal is fine.
    if kind in PRE_TOKENIZERS or (kind == "Split" and "String" in (step.get("pattern") or {})):
        return
    raise TokenizerLimitError(
        f"{field}: pre-tokeniser type {kind!r} is not one shiftwatch serves; allowed: "
        f"{[*PRE_TOKENIZERS, 'Sequence', 'Split (on a literal string)']}"
    )
