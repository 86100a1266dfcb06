"""Scoring a model: sliding-window evaluation of whole scenes into one confusion matrix
(evaluate.py), the confusion matrix and its metrics (metrics.py), the old / new / all summaries
and forgetting (summary.py), and scoring by class name on datasets that list only some classes
(by_name.py)."""
