"""Scoring a model: sliding-window evaluation of whole scenes into one confusion matrix
(evaluate.py), the metrics and old / new / all summaries (metrics.py), and scoring by class
name on datasets that list only some classes (by_name.py)."""
