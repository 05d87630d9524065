"""Inference-time analyses of trained checkpoints (python -m nmt.analyze)."""
