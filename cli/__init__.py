"""geoidec command line (installed as geoidec.cli)."""

STOPPED = {"sigterm": False}
"""Set when SIGTERM stopped a command that unwinds on it (predict); read by ``main()`` (the
module that ``python -m geoidec.cli.main`` runs is ``__main__``, so the flag lives here)."""
