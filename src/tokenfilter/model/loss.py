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


class _FusedWeightedCrossEntropy(torch.autograd.Function):
    """Σ w·(logsumexp(z) − z_target) / normalizer over the rows of ``logits``, with a backward
    that writes softmax(z)·scale − scale·onehot into the logits' own buffer.

    The same loss as log-softmax + gather: logsumexp(z) − z_t equals −(z_t − logsumexp(z)), up to
    the rounding order of the sum. It saves what the composite costs at a small model's large
    vocabulary-to-width ratio: a (N, V) log-probability tensor in the forward pass, and in the
    backward a zero-filled (N, V) gradient plus a separate softmax pass (together ~15% of a CPU
    training step at the default's largest rung). The logits must not be needed by anything else
    after the loss (true of the model's output logits); their buffer is reused for the gradient.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                normalizer: torch.Tensor) -> torch.Tensor:
        lse = torch.logsumexp(logits, dim=-1)
        per_token = lse - logits.gather(1, targets[:, None]).squeeze(1)
        ctx.save_for_backward(logits, lse, targets, weights, normalizer)
        return (per_token * weights).sum() / normalizer

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, lse, targets, weights, normalizer = ctx.saved_tensors
        scale = (grad / normalizer) * weights
        grad_logits = logits.sub_(lse[:, None]).exp_().mul_(scale[:, None])
        grad_logits.scatter_add_(1, targets[:, None], -scale[:, None])
        return grad_logits, None, None, None


def fused_weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                                 normalizer: torch.Tensor) -> torch.Tensor:
    """:func:`weighted_cross_entropy` with a normaliser, computed by :class:`_FusedWeightedCrossEntropy`
    (the training fast path). ``logits`` must be float32 and not used after the loss."""
    flat = logits.reshape(-1, logits.size(-1))
    if flat.dtype != torch.float32:
        flat = flat.float()
    normalizer = torch.as_tensor(normalizer, dtype=flat.dtype, device=flat.device)
    return _FusedWeightedCrossEntropy.apply(flat, targets.reshape(-1), weights.reshape(-1).to(flat.dtype), normalizer)


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
