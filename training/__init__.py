"""Training stage: models, training loop, evaluation and the study's reproduction (torch)."""
