"""Training: configs, targets and losses, pair data (datasets and still-image synthesis), the trainer."""
