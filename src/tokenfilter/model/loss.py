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


class _LinearWeightedCrossEntropy(torch.autograd.Function):
    """The LM head and the loss in one pass over row chunks: Σ w·(logsumexp(z) − z_target) / normalizer
    with z = scale·(x Wᵀ), whose gradients are computed in the forward pass, chunk by chunk.

    A chunk's logits (rows × V) stay in the L2 cache from the product that makes them to the two
    products that consume their gradient (dx = g W, dWᵀ += xᵀ g), where the composite writes an
    (N, V) logit tensor, reads it back for the log-softmax, writes and reads an (N, V) gradient:
    at the default's largest rung (N = 4,096, V = 1,024, width 80) the head and loss took about a
    quarter of a compiled step that way (profiled); the step's gain is measured by
    benchmarks/bench_trainer.py. The same math:
    log-softmax, gather and the softmax-minus-one-hot gradient as the composite, summed over
    chunks (float reassociation only). Like every fused loss it is for training: it spends the
    backward's work in the forward pass, so it is not used without gradients.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                normalizer: torch.Tensor, scale: float, chunk_rows: int) -> torch.Tensor:
        n, vocab = x.size(0), weight.size(0)
        grad_x = torch.empty_like(x)
        grad_weight_t = weight.new_zeros(weight.size(1), vocab)  # (E, V): row-major products
        row_scale = (weights / normalizer)[:, None]
        logits = x.new_empty(min(chunk_rows, n), vocab)
        weight_t = weight.t()
        total = x.new_zeros(())
        for lo in range(0, n, chunk_rows):
            hi = min(lo + chunk_rows, n)
            x_c, t_c, s_c = x[lo:hi], targets[lo:hi, None], row_scale[lo:hi]
            z = torch.mm(x_c, weight_t, out=logits[: hi - lo])
            if scale != 1.0:
                z.mul_(scale)
            log_probs = torch.log_softmax(z, dim=-1)
            total -= (log_probs.gather(1, t_c) * s_c).sum()
            # d loss / d z = s·(softmax(z) − onehot(target)), then through z = scale·x Wᵀ.
            grad_z = log_probs.exp_().mul_(s_c * scale)
            grad_z.scatter_add_(1, t_c, -s_c * scale)
            torch.mm(grad_z, weight, out=grad_x[lo:hi])
            grad_weight_t.addmm_(x_c.t(), grad_z)
        ctx.save_for_backward(grad_x, grad_weight_t)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_x, grad_weight_t = ctx.saved_tensors
        return grad_x * grad, grad_weight_t.t() * grad, None, None, None, None, None


def linear_weighted_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                  weights: torch.Tensor, normalizer: torch.Tensor, scale: float = 1.0,
                                  chunk_rows: int | None = None) -> torch.Tensor:
    """:func:`weighted_cross_entropy` of the logits ``scale · hidden @ weight.T`` with a normaliser,
    without materialising them (:class:`_LinearWeightedCrossEntropy`): the training fast path of a
    float32 model on the CPU. Rows are taken in chunks of about 256k logits (1 MiB, inside a core's
    L2 cache; 256 rows at the default vocabulary were fastest among 128-1,024 on the 2-core VM)."""
    flat = hidden.reshape(-1, hidden.size(-1))
    chunk_rows = chunk_rows or max(16, (1 << 18) // weight.size(0))
    normalizer = torch.as_tensor(normalizer, dtype=flat.dtype, device=flat.device)
    return _LinearWeightedCrossEntropy.apply(flat, weight, targets.reshape(-1), weights.reshape(-1).to(flat.dtype),
                                             normalizer, float(scale), chunk_rows)


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
