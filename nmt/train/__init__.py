"""Training: the update step, the loop, validation, checkpoints and the run directory."""
