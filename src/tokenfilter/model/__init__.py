"""The model every stage trains or reads: the decoder (``gpt``), its one checkpoint format
(``checkpoint``), its one loss (``loss``) and its residual stream (``hidden``).

Importing this package registers the architecture with transformers' Auto classes.
"""

from tokenfilter.model.gpt import TokenFilterConfig, TokenFilterForCausalLM, paper_parameter_count

__all__ = ["TokenFilterConfig", "TokenFilterForCausalLM", "paper_parameter_count"]
