"""geoidec command line (installed as geoidec.cli): ``main.py`` assembles the typer app from
one module per command (``train.py``, ``evaluate.py``, ``predict.py``, ...); the options
several commands share are in ``options.py``."""
