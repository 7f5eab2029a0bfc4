"""One training run: a variant, a seed, a dataset -> a run folder.

Run folder (`artifacts/runs/<variant>/<seed>/`): `checkpoint.pt` (state dict of
the best epoch), `config.json` (model, train and data configs: enough to rebuild
the model), `tokenizer.json` (trained on the train split), `log.jsonl` (one line
per epoch), `metrics.json`
(evaluation of the best epoch) and `predictions.parquet` (per-example outputs
on every evaluation set, for paired comparisons).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from shiftwatch.data import Dataset
from shiftwatch.tokenizer import train_tokenizer
from training.batches import EncodedSplit, encode_split, predict, shuffled_batches
from training.config import TrainConfig
from training.evaluate import evaluate_split
from training.model import SequenceClassifier, variant_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    best_epoch: int
    metrics: dict  # eval set name -> classification report
    seconds: float


def _loss_and_accuracy(
    model: SequenceClassifier, split: EncodedSplit, batch_size: int
) -> tuple[float, float]:
    logits, _ = predict(model, split.ids, batch_size)
    logits_t = torch.from_numpy(logits)
    labels_t = torch.from_numpy(split.labels)
    loss = F.cross_entropy(logits_t, labels_t).item()
    return loss, float((logits.argmax(1) == split.labels).mean())


def lr_factor(step: int, total_steps: int, warmup_frac: float) -> float:
    """Linear warm-up to 1, then linear decay to 0."""
    warmup = max(1, int(total_steps * warmup_frac))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def train_run(
    variant: str,
    dataset: Dataset,
    config: TrainConfig,
    run_dir: Path,
    model_fields: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> RunResult:
    """Train one variant with early stopping on in-domain validation, then evaluate.

    Args:
        variant: a name in `training.model.VARIANTS`.
        dataset: the loaded dataset (train/val/test splits plus shift sets).
        config: optimisation settings; `config.seed` makes the run deterministic.
        run_dir: folder to write; created if missing.
        model_fields: ModelConfig fields other than the variant switches (sizes).
        on_epoch: called with each epoch's log record (progress display).
    """
    started = time.perf_counter()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    train_frame = dataset.split("train")
    if config.max_train_examples is not None and len(train_frame) > config.max_train_examples:
        train_frame = train_frame.sample(n=config.max_train_examples, random_state=config.seed)
    tokenizer = train_tokenizer(train_frame["text"], config.tokenizer, dataset.input_kind)
    model_config = variant_config(
        variant,
        vocab_size=tokenizer.vocab_size,
        num_classes=len(dataset.labels),
        **(model_fields or {}),
    )
    # Sequences longer than the positional limit are cut there, in training as in serving.
    tokenizer = tokenizer.truncating(model_config.max_positions)
    train = encode_split(train_frame, tokenizer, dataset.labels)
    max_trained_length = max(len(ids) for ids in train.ids)
    val = encode_split(dataset.split("val"), tokenizer, dataset.labels)
    eval_sets = {
        name: encode_split(dataset.split(name), tokenizer, dataset.labels)
        for name in dataset.eval_sets
    }

    model = SequenceClassifier(model_config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = -(-len(train) // config.batch_size)
    total_steps = steps_per_epoch * config.max_epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, config.warmup_frac)
    )

    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "log.jsonl"
    log_path.write_text("")
    best = (-1.0, float("inf"))  # (val accuracy, -) ordering: higher acc, then lower loss
    best_state, best_epoch, stale = None, 0, 0
    for epoch in range(1, config.max_epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        total_loss, total_correct = 0.0, 0
        for input_ids, attention_mask, labels in shuffled_batches(train, config.batch_size, rng):
            logits, _ = model(input_ids, attention_mask)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(labels)
            total_correct += int((logits.argmax(1) == labels).sum())
        record = {
            "epoch": epoch,
            "lr": scheduler.get_last_lr()[0],
            "train_loss": total_loss / len(train),
            "train_acc": total_correct / len(train),
        }
        record["val_loss"], record["val_acc"] = _loss_and_accuracy(
            model, val, config.eval_batch_size
        )
        for name, split in eval_sets.items():
            record[f"{name}_loss"], record[f"{name}_acc"] = _loss_and_accuracy(
                model, split, config.eval_batch_size
            )
        record["seconds"] = time.perf_counter() - epoch_start
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        log.info("%s seed %d epoch %d: %s", variant, config.seed, epoch, record)
        if on_epoch is not None:
            on_epoch(record)
        if (record["val_acc"], -record["val_loss"]) > (best[0], -best[1]):
            best, best_state, best_epoch, stale = (
                (record["val_acc"], record["val_loss"]),
                copy.deepcopy(model.state_dict()),
                epoch,
                0,
            )
        else:
            stale += 1
            if stale >= config.patience:
                break

    model.load_state_dict(best_state)
    torch.save(best_state, run_dir / "checkpoint.pt")
    tokenizer.save(run_dir / "tokenizer.json")
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "variant": variant,
                "model": model_config.to_dict(),
                "train": config.to_dict(),
                "data": {
                    "source": dataset.source,
                    "content_sha256": dataset.content_sha256,
                    "labels": list(dataset.labels),
                    "input_kind": dataset.input_kind,
                    "max_trained_length": max_trained_length,
                },
                "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size},
                "tokenizer_sha256": tokenizer.sha256,
                "best_epoch": best_epoch,
            },
            indent=2,
        )
    )
    metrics, predictions = {}, []
    for name, split in {"val": val, **eval_sets}.items():
        report, frame = evaluate_split(model, split, dataset.labels, config.eval_batch_size)
        metrics[name] = report
        predictions.append(frame.assign(set=name))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    pd.concat(predictions, ignore_index=True).to_parquet(
        run_dir / "predictions.parquet", index=False
    )
    return RunResult(run_dir, best_epoch, metrics, time.perf_counter() - started)
