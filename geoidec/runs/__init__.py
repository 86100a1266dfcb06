"""What a run folder shows (its paths and readers are geoidec/run_folder.py): the reports and
figures written into it, the model card (card.py: the card as data, card_sections.py,
card_markdown.py, checkpoint_meta.py, model_card.py), side-by-side comparison of runs and
``geoidec evaluate RUN``."""
