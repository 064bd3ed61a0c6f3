"""The one training loop and what it needs: on-device augmentation, batches, checkpoints, DDP, inference."""
