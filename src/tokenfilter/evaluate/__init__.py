"""Evaluation: text losses of a model on held-out text (``text``)."""
