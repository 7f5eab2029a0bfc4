"""Training configuration and the named profiles of the reproduction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from shiftwatch.tokenizer import TokenizerConfig


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run."""

    seed: int = 0  # model init, shuffling and dropout
    max_epochs: int = 12  # upper bound; early stopping usually ends sooner
    batch_size: int = 64
    lr: float = 2e-3  # peak AdamW learning rate
    weight_decay: float = 0.01
    warmup_frac: float = 0.05  # share of steps with linear warm-up, then linear decay to 0
    grad_clip: float = 1.0  # max global gradient norm
    patience: int = 3  # epochs without ID-validation improvement before stopping
    threads: int = 2  # torch intra-op threads (explicit: containers and CI have few cores)
    eval_batch_size: int = 256
    max_train_examples: int | None = None  # subsample the train split (tests, quick looks)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # built on the train split

    def __post_init__(self) -> None:
        if isinstance(self.tokenizer, dict):  # read back from config.json
            object.__setattr__(self, "tokenizer", TokenizerConfig(**self.tokenizer))
        if self.max_epochs < 1 or self.batch_size < 1 or self.patience < 1 or self.threads < 1:
            raise ValueError("max_epochs, batch_size, patience and threads must be >= 1")
        if not 0 < self.lr < 1:
            raise ValueError("lr must be in (0, 1)")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError("warmup_frac must be in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Profile:
    """A reproduction profile: which seeds, with which training settings."""

    name: str
    seeds: tuple[int, ...]
    train: TrainConfig


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", (0,), TrainConfig(max_epochs=6, patience=2)),
    "paper": Profile("paper", (0, 1, 2, 3, 4), TrainConfig(max_epochs=8, patience=3)),
}


def profile(name: str, **overrides) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {sorted(PROFILES)}")
    chosen = PROFILES[name]
    return replace(chosen, train=replace(chosen.train, **overrides)) if overrides else chosen
