"""tokenfilter: token-level pretraining data filtering, reproduced end to end.

The package holds all logic of the Snakemake workflow in ``workflow/``; each module is named
for what it does (``corpus``, ``alignment``, ``shards``, ``model``, ``train``, ``filtering``, ...).
"""

__version__ = "0.1.0"

# The forget / retain domains every stage speaks of. The built-in world uses medicine as the
# forget domain, biology as the nearby retain domain and general text as the far one (paper §3).
DOMAINS = ("forget", "retain_near", "retain_far")
