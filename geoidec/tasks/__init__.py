"""Incremental task schedules: which dataset classes are learnt at which step.

:class:`TaskSchedule` (:mod:`~geoidec.tasks.schedule`) parses a task spec such as ``"4-1"``,
``"2-2-1"`` or ``"forest,water|shrubland"`` (the notation: :mod:`~geoidec.tasks.spec`) against
the dataset's class list and gives each step's old, new and future classes and the label
lookup tables; :func:`remap` (:mod:`~geoidec.tasks.labels`) applies such a table to labels.
"""

from geoidec.tasks.labels import remap
from geoidec.tasks.schedule import TaskSchedule
from geoidec.tasks.spec import TaskSpecError, normalise_name

__all__ = ["TaskSchedule", "TaskSpecError", "normalise_name", "remap"]
