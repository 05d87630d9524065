"""The objective: the smoothing registry and the criteria that turn logits into a loss.

Importing the package registers the shipped conventions (nmt.objective.conventions), so the
registry is complete whichever of its modules is imported first.
"""

from nmt.objective import conventions as _conventions  # noqa: F401  (registers them)
