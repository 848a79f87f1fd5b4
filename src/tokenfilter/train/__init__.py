"""The one training loop (``loop``), its batch sources (``pretraining``, ``finetuning``) and
objectives (``objectives``). ``python -m tokenfilter.train spec.json`` runs one spec; it is what
the workflow's jobs and ``torchrun`` call."""
