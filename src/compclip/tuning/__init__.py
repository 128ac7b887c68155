"""Optuna over the loss weights: the search space from params.yaml `tune`, one study per tuned method,
trials that train from the pretrained CLIP and are scored on the validation split, pruned on their
intermediate values; the best feasible values go to train (`train.use_tuned`)."""
