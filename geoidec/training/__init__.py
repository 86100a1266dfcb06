"""Training: the incremental run (run.py) and its ``--from`` extension (extend.py), the
Lightning module of one step, the Trainer set-up, DDP launch, chip loaders, ``--resume`` and
the input checks before a run starts."""
