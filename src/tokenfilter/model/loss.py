"""The one loss of the project: token cross-entropy with a weight per target.

Every training arm, the evaluation and the model's own ``labels=`` path go through
:func:`weighted_cross_entropy`, so a loss-masked position means the same thing everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every position, flattened to (N,), computed in float32."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="none")


def weighted_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    normalizer: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean token cross-entropy.

    Args:
        logits: (..., vocab) unnormalised scores, one row per position.
        targets: (...) token ids to predict at each position.
        weights: (...) loss weight of each target; 0 drops the position (loss masking).
            ``None`` weighs every target 1.
        normalizer: divide the weighted sum by this instead of by the sum of weights. The trainer
            passes the loss-bearing count of the whole optimizer step, so that gradient
            accumulation over micro-batches with different numbers of masked targets gives the
            same update as one big batch.

    Returns:
        ``(loss, weight_sum)``: the weighted mean over positions (0 when every weight is 0, so
        a fully masked batch contributes no gradient rather than NaN) and the sum of weights,
        i.e. the number of loss-bearing targets for 0/1 weights.
    """
    per_token = token_cross_entropy(logits, targets)
    if weights is None:
        weights = torch.ones_like(per_token)
    weights = weights.reshape(-1).to(per_token.dtype)
    weight_sum = weights.sum()
    if normalizer is None:
        # An all-masked batch has weight_sum 0; dividing by 1 then gives loss 0, not NaN.
        normalizer = torch.where(weight_sum > 0, weight_sum, torch.ones_like(weight_sum))
    loss = (per_token * weights).sum() / normalizer
    return loss, weight_sum
