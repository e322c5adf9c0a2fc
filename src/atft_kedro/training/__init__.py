"""Losses, batching, the training loop and checkpoints."""
