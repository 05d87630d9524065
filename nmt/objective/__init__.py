"""The objective: the smoothing registry and the criteria that turn logits into a loss."""
