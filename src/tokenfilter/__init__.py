"""tokenfilter: token-level pretraining data filtering, reproduced end to end.

The package holds all logic of the Snakemake workflow in ``workflow/``, one folder per stage:
``data`` (corpus, tokenizer, token shards, the built-in world), ``model`` (the decoder, its
checkpoint format, loss and residual stream), ``train`` (the one training loop and its batch
sources), ``filtering`` (arms and annotation), ``judge``, ``evaluate``, ``analysis`` and
``report``; ``config`` validates the workflow config and resolves experiment series into runs.
"""

__version__ = "0.1.0"

# The forget / retain domains every stage speaks of. The built-in world uses medicine as the
# forget domain, biology as the nearby retain domain and general text as the far one (paper §3).
DOMAINS = ("forget", "retain_near", "retain_far")

# The filtering arms (paper §3, Fig 2): what a run does with the per-token forget score.
ARMS = ("baseline", "document", "mask", "remove")
TOKEN_ARMS = ("mask", "remove")
