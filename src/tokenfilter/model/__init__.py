"""The model every stage trains or reads: the decoder in plain PyTorch (``gpt``: what jobs build),
the same model as a transformers model (``hf``: generate, lm-eval), its one checkpoint format
(``checkpoint``), its one loss (``loss``) and its residual stream (``hidden``).

``TokenFilterConfig`` and ``TokenFilterForCausalLM`` are imported from ``hf`` on first use, so
importing this package does not import transformers.
"""

from tokenfilter.model.gpt import GPT, GPTConfig, paper_parameter_count

__all__ = ["GPT", "GPTConfig", "TokenFilterConfig", "TokenFilterForCausalLM", "paper_parameter_count"]


def __getattr__(name: str):
    if name in ("TokenFilterConfig", "TokenFilterForCausalLM"):
        from tokenfilter.model import hf

        return getattr(hf, name)
    raise AttributeError(f"module 'tokenfilter.model' has no attribute {name!r}")
