"""Per-sequence drift features: the one function training, export and serving share.

Every feature is a float so a window of them is a plain numeric frame for the
drift tests. Computed on token ids, so they see exactly what the model sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from shiftwatch.tokenizer import TextTokenizer

# Order is the column order of reference.parquet and of prediction events.
FEATURE_NAMES: tuple[str, ...] = (
    "length",  # number of token ids
    "oov_share",  # share of ids that are the unknown token (or padding, which text never is)
    "over_max_length",  # 1.0 when longer than any training sequence, else 0.0
    "distinct_share",  # distinct ids / length (repetitiveness)
    "mean_log_rank",  # mean log frequency rank of the regular ids, scaled to [0, 1]
)


def drift_features(
    ids: Sequence[int], tokenizer: TextTokenizer, max_trained_length: int
) -> dict[str, float]:
    """Describe one encoded sequence for input-drift monitoring.

    Ranks: shiftwatch's own tokenizers number regular tokens by training frequency
    after their special tokens, so `id - (number of special ids) + 1` is the rank. An
    imported tokenizer's ids are not ranks; the feature is then only an id statistic,
    which is still comparable between the reference window and live traffic.

    Args:
        ids: token ids of one sequence, without padding (see `TextTokenizer.encode`).
        tokenizer: the tokenizer the ids come from.
        max_trained_length: the longest sequence (in ids) seen in training.

    Returns:
        A mapping from each name in `FEATURE_NAMES` to its value.
    """
    length = len(ids)
    if length == 0:
        raise ValueError("drift features need a non-empty sequence")
    specials = tokenizer.special_ids
    offset = len(specials) - 1
    regular = [i for i in ids if i not in specials]
    unknown = sum(1 for i in ids if i == tokenizer.unk_id or i == tokenizer.pad_id)
    max_log_rank = math.log(max(tokenizer.vocab_size - len(specials), 2))
    mean_log_rank = (
        sum(math.log(max(i - offset, 1)) for i in regular) / len(regular) / max_log_rank
        if regular
        else 1.0
    )
    return {
        "length": float(length),
        "oov_share": unknown / length,
        "over_max_length": float(length > max_trained_length),
        "distinct_share": len(set(ids)) / length,
        "mean_log_rank": mean_log_rank,
    }
