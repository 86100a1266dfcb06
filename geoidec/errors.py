"""The kinds of user error, and the exit status the command line gives each.

- :class:`UsageError` (exit status 2): the command line or the settings are wrong (an option
  value out of range, options that do not go together, a typo in a choice or a ``--set`` key,
  a task spec the dataset cannot follow, an output that exists without ``--overwrite``).
  Fixed by changing the command.
- everything else the command line reports in one line (exit status 1): the data or the
  machine (rasters missing, unreadable or on other grids, checkpoints that do not fit, a
  full disk, no GPU): fixed by changing the inputs or the environment.
"""

from __future__ import annotations

#: Exit status of usage errors (the shell convention, also click's for unknown options).
USAGE_EXIT = 2
#: Exit status of data and runtime errors.
DATA_EXIT = 1


class DataError(ValueError):
    """A problem with the user's data, phrased in one line with what to do (exit status 1)."""


class UsageError(ValueError):
    """The command line or settings are wrong; the message says what to change."""
