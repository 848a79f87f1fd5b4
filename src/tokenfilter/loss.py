"""The one loss of the project: token cross-entropy with a weight per target.

Every training arm, the evaluation and the model's own ``labels=`` path go through
:func:`weighted_cross_entropy`, so a loss-masked position means the same thing everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean token cross-entropy.

    Args:
        logits: (..., vocab) unnormalised scores, one row per position.
        targets: (...) token ids to predict at each position.
        weights: (...) loss weight of each target; 0 drops the position (loss masking).
            ``None`` weighs every target 1.

    Returns:
        ``(loss, weight_sum)``: the weighted mean over positions (0 when every weight is 0, so
        a fully masked batch contributes no gradient rather than NaN) and the sum of weights,
        i.e. the number of loss-bearing targets for 0/1 weights.
    """
    per_token = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="none"
    )
    if weights is None:
        weight_sum = torch.tensor(float(per_token.numel()), device=per_token.device)
        return per_token.mean(), weight_sum
    weights = weights.reshape(-1).to(per_token.dtype)
    weight_sum = weights.sum()
    loss = (per_token * weights).sum() / weight_sum.clamp_min(1.0)
    return loss, weight_sum
