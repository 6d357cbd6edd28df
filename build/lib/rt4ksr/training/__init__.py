"""Training: the LightningModule, its callbacks, losses, schedules, and a run from config to metrics.json."""
