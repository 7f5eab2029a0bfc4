"""The embedded default dataset: multi-domain token sequences with named shift sets.

Six classes. Three are defined by CONTENT (which topic's keywords appear) and
three by ORDER: every `first_*` sequence holds exactly one each of the markers
`mark_a`, `mark_b`, `mark_c`, and the class is the marker that comes first. The
three order classes share the same multiset of signal tokens, so a bag-of-tokens
model cannot tell them apart and a model without position information cannot
either; `tests/core/test_synthetic.py` checks the first claim with a count-based
logistic regression.

Four training domains differ in background-token distribution (a Zipf law over
a domain-specific ranking of the background vocabulary), length distribution,
token-noise rate, label-noise rate, class priors and where in the sequence the
signal tokens sit. Every split is deterministic from `DataConfig.seed`.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from shiftwatch.data.loader import content_sha256

CLASS_NAMES: tuple[str, ...] = ("topic_a", "topic_b", "topic_c", "first_a", "first_b", "first_c")
CONTENT_CLASSES: tuple[int, ...] = (0, 1, 2)
ORDER_CLASSES: tuple[int, ...] = (3, 4, 5)
MARKERS: tuple[str, ...] = ("mark_a", "mark_b", "mark_c")
KEYWORDS: tuple[tuple[str, ...], ...] = tuple(
    tuple(f"kw{c}_{i}" for i in range(8)) for c in CONTENT_CLASSES
)
# Never in training: the vocabulary shift draws from these.
UNSEEN_KEYWORDS: tuple[tuple[str, ...], ...] = tuple(
    tuple(f"kv{c}_{i}" for i in range(8)) for c in CONTENT_CLASSES
)
BACKGROUND: tuple[str, ...] = tuple(f"w{i}" for i in range(300))
UNSEEN_BACKGROUND: tuple[str, ...] = tuple(f"x{i}" for i in range(300))


@dataclass(frozen=True)
class DomainSpec:
    """How one domain's sequences are drawn."""

    name: str
    zipf_exponent: float  # steepness of the background-token distribution
    length_range: tuple[int, int]  # inclusive bounds on sequence length
    token_noise: float  # share of background tokens drawn uniformly instead of by Zipf
    label_noise: float  # share of labels replaced by a uniformly random class
    class_priors: tuple[float, ...]  # one weight per class in CLASS_NAMES
    signal_region: tuple[float, float]  # fraction of the sequence where signal tokens sit
    unseen_background_share: float = 0.0  # vocab shift: background drawn from unseen tokens
    unseen_keyword_share: float = 0.0  # vocab shift: keywords replaced by unseen synonyms

    def __post_init__(self) -> None:
        low, high = self.length_range
        if not 4 <= low <= high:
            raise ValueError(f"{self.name}: length_range must satisfy 4 <= low <= high")
        if len(self.class_priors) != len(CLASS_NAMES):
            raise ValueError(f"{self.name}: class_priors needs {len(CLASS_NAMES)} weights")
        start, end = self.signal_region
        if not 0.0 <= start < end <= 1.0 or (end - start) * low < 3:
            raise ValueError(f"{self.name}: signal_region must hold 3 positions at length {low}")


TRAIN_DOMAINS: tuple[DomainSpec, ...] = (
    DomainSpec("news", 1.1, (16, 40), 0.05, 0.01, (0.22, 0.22, 0.22, 0.12, 0.11, 0.11), (0.0, 0.5)),
    DomainSpec(
        "reviews", 0.9, (24, 56), 0.10, 0.02, (0.10, 0.15, 0.25, 0.20, 0.15, 0.15), (0.1, 0.6)
    ),
    DomainSpec(
        "support", 1.3, (32, 64), 0.02, 0.00, (0.10, 0.10, 0.10, 0.25, 0.25, 0.20), (0.0, 0.7)
    ),
    DomainSpec(
        "social", 0.7, (8, 32), 0.20, 0.03, (0.20, 0.20, 0.10, 0.10, 0.20, 0.20), (0.2, 0.8)
    ),
)
MAX_TRAINED_LENGTH = max(d.length_range[1] for d in TRAIN_DOMAINS)
UNIFORM_PRIORS = (1 / 6,) * 6


def _shifted(transform) -> tuple[DomainSpec, ...]:
    return tuple(transform(d) for d in TRAIN_DOMAINS)


# Each named shift set changes one thing against the training mixture (new_domain
# changes the whole domain). `domain` in its rows is the domain it was drawn from.
SHIFT_SETS: dict[str, tuple[str, tuple[DomainSpec, ...]]] = {
    "new_domain": (
        "An unseen domain 'clinical': its own background ranking and Zipf law, "
        "lengths 24-64, 15% token noise, uniform priors, and signal tokens in the "
        "second half of the sequence (training domains put them mostly earlier).",
        (DomainSpec("clinical", 1.0, (24, 64), 0.15, 0.0, UNIFORM_PRIORS, (0.5, 1.0)),),
    ),
    "length_shift": (
        f"The training domains at lengths 80-256, all longer than the longest training "
        f"sequence ({MAX_TRAINED_LENGTH}); everything else as in training.",
        _shifted(lambda d: replace(d, length_range=(80, 256))),
    ),
    "vocab_shift": (
        "The training domains with half the background tokens and 30% of topic "
        "keywords replaced by tokens never seen in training (they encode as <unk>).",
        _shifted(lambda d: replace(d, unseen_background_share=0.5, unseen_keyword_share=0.3)),
    ),
    "label_shift": (
        "The training domains with class priors moved towards the order classes "
        "(5/5/5/30/30/25%); p(sequence | class) unchanged.",
        _shifted(lambda d: replace(d, class_priors=(0.05, 0.05, 0.05, 0.30, 0.30, 0.25))),
    ),
}


@dataclass(frozen=True)
class DataConfig:
    """Sizes and seed of the embedded default dataset."""

    seed: int = 0  # every split is a pure function of this seed
    train_per_domain: int = 2500  # training sequences per training domain
    val_per_domain: int = 250  # held-out in-domain validation (early stopping, reference window)
    test_per_domain: int = 250  # held-out in-domain test
    shift_set_size: int = 1000  # sequences in each named shift set

    def __post_init__(self) -> None:
        for name in ("train_per_domain", "val_per_domain", "test_per_domain", "shift_set_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"DataConfig.{name} must be >= 1")


def _background_ranking(domain: str) -> np.ndarray:
    # A domain's ranking of the background vocabulary depends on its name only,
    # so a domain keeps its identity across dataset seeds.
    digest = hashlib.sha256(domain.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little")).permutation(len(BACKGROUND))


@dataclass
class _DomainSampler:
    spec: DomainSpec
    probs: np.ndarray = field(init=False)
    ranking: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        ranks = np.arange(1, len(BACKGROUND) + 1, dtype=float)
        weights = ranks**-self.spec.zipf_exponent
        self.probs = weights / weights.sum()
        self.ranking = _background_ranking(self.spec.name)

    def sample(self, rng: np.random.Generator) -> tuple[list[str], int]:
        spec = self.spec
        length = int(rng.integers(spec.length_range[0], spec.length_range[1] + 1))
        picks = self.ranking[rng.choice(len(BACKGROUND), size=length, p=self.probs)]
        noisy = rng.random(length) < spec.token_noise
        picks[noisy] = rng.integers(0, len(BACKGROUND), size=int(noisy.sum()))
        unseen = rng.random(length) < spec.unseen_background_share
        tokens = [
            UNSEEN_BACKGROUND[p] if u else BACKGROUND[p] for p, u in zip(picks, unseen, strict=True)
        ]

        label = int(
            rng.choice(len(CLASS_NAMES), p=np.asarray(spec.class_priors) / sum(spec.class_priors))
        )
        start = int(spec.signal_region[0] * length)
        end = max(start + 3, int(np.ceil(spec.signal_region[1] * length)))
        if label in CONTENT_CLASSES:
            count = int(rng.integers(2, 4))
            positions = rng.choice(np.arange(start, end), size=count, replace=False)
            for pos in positions:
                pool = UNSEEN_KEYWORDS if rng.random() < spec.unseen_keyword_share else KEYWORDS
                tokens[pos] = pool[label][int(rng.integers(len(pool[label])))]
        else:
            positions = np.sort(rng.choice(np.arange(start, end), size=3, replace=False))
            first = label - ORDER_CLASSES[0]
            rest = [m for i, m in enumerate(MARKERS) if i != first]
            rng.shuffle(rest)
            for pos, marker in zip(positions, [MARKERS[first], *rest], strict=True):
                tokens[pos] = marker
        if rng.random() < spec.label_noise:
            label = int(rng.integers(len(CLASS_NAMES)))
        return tokens, label


def _draw(
    domains: tuple[DomainSpec, ...], n_per_domain: int, seed: int, split_index: int
) -> list[dict]:
    rows = []
    for d_index, spec in enumerate(domains):
        rng = np.random.default_rng([seed, split_index, d_index])
        sampler = _DomainSampler(spec)
        for _ in range(n_per_domain):
            tokens, label = sampler.sample(rng)
            rows.append(
                {"text": " ".join(tokens), "label": CLASS_NAMES[label], "domain": spec.name}
            )
    return rows


def generate_dataset(config: DataConfig = DataConfig()) -> pd.DataFrame:
    """Draw every split of the default dataset.

    Returns:
        One frame with columns `text` (the tokens joined by single spaces), `label`,
        `domain` and `split` (`train`, `val`, `test`, or a name from `SHIFT_SETS`).
    """
    frames = []
    splits = {
        "train": (TRAIN_DOMAINS, config.train_per_domain),
        "val": (TRAIN_DOMAINS, config.val_per_domain),
        "test": (TRAIN_DOMAINS, config.test_per_domain),
    }
    for name, (_, domains) in SHIFT_SETS.items():
        splits[name] = (domains, max(1, config.shift_set_size // len(domains)))
    for split_index, (split, (domains, n)) in enumerate(splits.items()):
        frame = pd.DataFrame(_draw(domains, n, config.seed, split_index))
        frame["split"] = split
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def sample_scenario(shift_set: str | None, n: int, seed: int) -> pd.DataFrame:
    """Draw `n` fresh sequences from the training mixture (None) or a named shift set.

    Used by traffic replay: same generator, a seed disjoint from the dataset's.
    """
    domains = TRAIN_DOMAINS if shift_set is None else SHIFT_SETS[shift_set][1]
    per_domain = -(-n // len(domains))
    rows = _draw(domains, per_domain, seed, split_index=1000 + len(SHIFT_SETS))
    order = np.random.default_rng(seed).permutation(len(rows))[:n]
    return pd.DataFrame([rows[i] for i in order])


def manifest(frame: pd.DataFrame, config: DataConfig) -> dict:
    """What a generated dataset is: config, sizes, classes, shift sets, content hash."""
    return {
        "generator": "shiftwatch.data.synthetic",
        "input": "tokens",
        "config": asdict(config),
        "sizes": {k: int(v) for k, v in frame["split"].value_counts(sort=False).items()},
        "classes": list(CLASS_NAMES),
        "order_classes": [CLASS_NAMES[c] for c in ORDER_CLASSES],
        "train_domains": [d.name for d in TRAIN_DOMAINS],
        "max_trained_length": MAX_TRAINED_LENGTH,
        "shift_sets": {name: desc for name, (desc, _) in SHIFT_SETS.items()},
        "content_sha256": content_sha256(frame),
    }
