"""Training: the incremental run (run.py: its inputs in run_inputs.py, a step's set-up in
step_setup.py, its saving in step_saving.py, ``--step0-from`` in step0_reuse.py, the entry
points in start.py) and its ``--from`` extension (extend.py, with parent.py, class_match.py
and guard_rails.py), the Lightning module of one step, the Trainer set-up, DDP launch, chip
loaders, ``--resume`` and the input checks before a run starts."""
