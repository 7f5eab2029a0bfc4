"""Per-sequence drift features: the one function training, export and serving share.

Every feature is a float so a window of them is a plain numeric frame for the
drift tests. Computed on token ids, so they see exactly what the model sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from shiftwatch.vocab import PAD_ID, UNK_ID

# Order is the column order of reference.parquet and of prediction events.
FEATURE_NAMES: tuple[str, ...] = (
    "length",  # number of tokens
    "oov_share",  # share of tokens unknown to the vocabulary
    "over_max_length",  # 1.0 when longer than any training sequence, else 0.0
    "distinct_share",  # distinct tokens / length (repetitiveness)
    "mean_log_rank",  # mean log frequency rank of known tokens, scaled to [0, 1]
)


def drift_features(
    ids: Sequence[int], vocab_size: int, max_trained_length: int
) -> dict[str, float]:
    """Describe one encoded sequence for input-drift monitoring.

    Args:
        ids: token ids of one sequence, without padding (see `Vocabulary.encode`).
        vocab_size: size of the vocabulary the ids come from (ids are frequency ranks).
        max_trained_length: the longest sequence seen in training.

    Returns:
        A mapping from each name in `FEATURE_NAMES` to its value.
    """
    length = len(ids)
    if length == 0:
        raise ValueError("drift features need a non-empty sequence")
    known = [i for i in ids if i not in (PAD_ID, UNK_ID)]
    # Known ids run 2..vocab_size-1, so rank = id - 1 runs 1..vocab_size-2.
    max_log_rank = math.log(max(vocab_size - 2, 2))
    mean_log_rank = (
        sum(math.log(i - 1) for i in known) / len(known) / max_log_rank if known else 1.0
    )
    return {
        "length": float(length),
        "oov_share": (length - len(known)) / length,
        "over_max_length": float(length > max_trained_length),
        "distinct_share": len(set(ids)) / length,
        "mean_log_rank": mean_log_rank,
    }
