"""The four arms and their modifiers (DESIGN §3), including correctness traps 2 and 4."""

import numpy as np
import pytest
import torch

from tokenfilter.errors import ConfigError
from tokenfilter.filtering.arms import (
    FilterPlan,
    apply_arm,
    document_threshold_for_fraction,
    forget_flags,
    kept_documents,
    make_plan,
    threshold_for_fraction,
)

HIDDEN = 1


def _batch():
    # Two windows of T+1 = 6 tokens; flags mark forget tokens.
    tokens = torch.tensor([[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25]])
    flags = torch.tensor([[0, 1, 1, 0, 0, 1], [1, 0, 0, 0, 1, 0]], dtype=torch.bool)
    return tokens, flags


def test_mask_drops_exactly_the_positions_whose_target_is_forget():
    """Trap 2: position t's loss is dropped when token t+1 (its target) is forget."""
    tokens, flags = _batch()
    inputs, targets, weights = apply_arm("mask", tokens, flags, HIDDEN)
    assert torch.equal(inputs, tokens[:, :-1])  # masking never changes what the model reads
    assert torch.equal(targets, tokens[:, 1:])
    expected = torch.tensor([[0, 0, 1, 1, 0], [1, 1, 1, 0, 1]], dtype=torch.float32)
    assert torch.equal(weights, expected)
    # Every zero-weight position predicts a forget token, every forget target has zero weight.
    assert torch.equal(weights == 0, flags[:, 1:])


def test_mask_keys_on_target_not_input():
    """The authors' code masked on the input token; a forget *input* alone must not drop the loss."""
    tokens = torch.tensor([[5, 6, 7]])
    flags = torch.tensor([[True, False, False]])  # only the first input is forget
    _, _, weights = apply_arm("mask", tokens, flags, HIDDEN)
    assert weights.tolist() == [[1.0, 1.0]]


def test_remove_never_shows_a_forget_token_in_the_inputs():
    tokens, flags = _batch()
    inputs, targets, weights = apply_arm("remove", tokens, flags, HIDDEN)
    forget_inputs = flags[:, :-1]
    assert (inputs[forget_inputs] == HIDDEN).all()
    assert torch.equal(inputs[~forget_inputs], tokens[:, :-1][~forget_inputs])
    forget_ids = set(tokens[flags].tolist())
    assert not forget_ids & set(inputs.flatten().tolist())
    assert torch.equal(weights == 0, flags[:, 1:])  # and their targets are masked


@pytest.mark.parametrize("arm", ["baseline", "document"])
def test_untouched_arms(arm):
    tokens, flags = _batch()
    inputs, targets, weights = apply_arm(arm, tokens, flags, HIDDEN)
    assert torch.equal(inputs, tokens[:, :-1]) and torch.equal(targets, tokens[:, 1:])
    assert (weights == 1).all()


def test_threshold_for_fraction_flags_exactly_that_fraction_even_with_ties():
    """Scores stored as float16 tie in large blocks; the tied tokens at the threshold are split by
    a per-position draw, so "filter 6%" flags 6% (a first version flagged 6.26%)."""
    rng = np.random.default_rng(0)
    scores = rng.random(200_000).astype(np.float16)
    for fraction in (0.03, 0.06, 0.12, 0.5):
        plan = make_plan("mask", {"fraction": fraction, "noise": 0.0}, scores, None, None, 10, seed=1)
        flags = forget_flags(plan, scores, np.arange(len(scores)), step=0)
        assert abs(flags.mean() - fraction) < 2e-4, (fraction, flags.mean())


def test_threshold_never_flags_tokens_without_evidence():
    """With many zero scores (EOT among them) a large fraction stops at the positive scores
    instead of flagging zeros: the guard fires."""
    scores = np.array([0.0] * 80 + [0.3] * 10 + [0.9] * 10, dtype=np.float32)
    t, tie_share = threshold_for_fraction(scores, 0.5)
    assert t == pytest.approx(0.3) and tie_share == 1.0
    plan = make_plan("mask", {"fraction": 0.5, "noise": 0.0}, scores, None, None, 10, seed=1)
    assert forget_flags(plan, scores, np.arange(100), step=0).mean() == pytest.approx(0.2)


def test_the_truth_score_leaves_tokens_without_evidence_at_zero():
    """The guard above can only fire if a token with no forget label in its window scores 0: the
    tie-break offset applies to tokens with some evidence only."""
    from tokenfilter.filtering.annotation import truth_token_scores

    labels = np.array([0] * 30 + [1] * 5 + [0] * 30, dtype=np.uint8)
    scores = truth_token_scores(labels, context_window=4)
    assert (scores[:26] == 0).all() and (scores[26:30] > 0).all() and (scores[-26:] == 0).all()


def test_noise_is_independent_of_a_simulated_classifiers_errors():
    """Trap 8: label noise r on a filter of accuracy a gives the error 1 − a(1−r) − r(1−a) (paper
    §6.1), because the noise draws are independent of the filter's own errors. (Drawn from the
    same stream, noise at the filter's error rate undid its errors: error 0.)"""
    from tokenfilter.filtering.annotation import truth_token_scores

    rng = np.random.default_rng(4)
    labels = (rng.random(400_000) < 0.3).astype(np.uint8)
    a = 0.89
    scores = truth_token_scores(labels, context_window=0, error_rate=1 - a, seed=7)
    for r in (0.11, 0.3):
        plan = FilterPlan("mask", token_threshold=0.5, noise=r, noise_seed=7)
        flags = forget_flags(plan, scores, np.arange(len(scores)), step=0)
        error = np.mean(flags != labels.astype(bool))
        expected = 1 - a * (1 - r) - r * (1 - a)
        assert abs(error - expected) < 0.005, (r, error, expected)


def test_noise_never_flips_end_of_text():
    plan = FilterPlan("mask", token_threshold=0.5, noise=0.9, noise_seed=3)
    scores = np.zeros(10_000, dtype=np.float32)
    eot = np.zeros(10_000, dtype=bool)
    eot[::7] = True
    flags = forget_flags(plan, scores, np.arange(10_000), step=0, end_of_text=eot)
    assert not flags[eot].any() and flags[~eot].mean() > 0.85


def test_document_threshold_for_fraction_drops_highest_scoring_documents():
    doc_scores = np.array([0.9, 0.1, 0.5, 0.0, 0.7], dtype=np.float32)
    lengths = np.array([100, 100, 100, 100, 100])
    t = document_threshold_for_fraction(doc_scores, lengths, 0.4)
    plan = FilterPlan("document", document_threshold=t)
    kept = kept_documents(plan, doc_scores)
    assert kept.tolist() == [False, True, True, True, False]
    assert 1 - lengths[kept].sum() / lengths.sum() == pytest.approx(0.4)


def test_noise_flips_labels_at_the_rate_and_deterministically():
    plan = FilterPlan("mask", token_threshold=0.5, noise=0.2, noise_seed=3)
    scores = np.zeros(200_000, dtype=np.float32)
    positions = np.arange(200_000)
    flags = forget_flags(plan, scores, positions, step=0)
    assert abs(flags.mean() - 0.2) < 0.005
    # The same token gets the same noisy label whenever it is read (a noisy classifier).
    again = forget_flags(plan, scores[5000:6000], positions[5000:6000], step=17)
    assert np.array_equal(again, flags[5000:6000])


def test_delay_switches_filtering_on_at_the_step():
    plan = FilterPlan("remove", token_threshold=0.5, delay_steps=10)
    scores = np.ones(8, dtype=np.float32)
    assert not forget_flags(plan, scores, np.arange(8), step=9).any()
    assert forget_flags(plan, scores, np.arange(8), step=10).all()


def test_make_plan_resolves_fraction_and_delay():
    scores = np.linspace(0, 1, 1000, dtype=np.float32)
    plan = make_plan("mask", {"token_threshold": 0.5, "fraction": 0.1, "delay": 0.4, "noise": 0.0},
                     scores, None, None, total_steps=50, seed=1)
    assert plan.delay_steps == 20
    assert forget_flags(plan, scores, np.arange(1000), step=20).mean() == pytest.approx(0.1, abs=0.002)
    assert make_plan("baseline", {}, None, None, None, 50, 1).arm == "baseline"


def test_document_arm_rejects_token_modifiers():
    with pytest.raises(ConfigError, match="token arms only"):
        FilterPlan("document", document_threshold=0.5, delay_steps=3)


# --- structured label noise (the label-noise ablation's second error model) -------------------

def _world_like_labels(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels with forget spans of 3-30 tokens, ~2% ambiguous tokens and an EOT every ~200."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.uint8)
    i = 0
    while i < n:
        i += int(rng.integers(5, 60))
        length = int(rng.integers(3, 30))
        labels[i:i + length] = 1
        i += length
    ambiguous = (rng.random(n) < 0.02).astype(np.uint8)
    eot = np.zeros(n, dtype=bool)
    eot[::200] = True
    labels[eot] = 0
    return labels, ambiguous, eot


def test_hard_tokens_are_span_edges_and_ambiguous_words():
    from tokenfilter.filtering.noise import hard_tokens

    labels = np.array([0, 0, 1, 1, 1, 0, 0, 0, 0, 0], dtype=np.uint8)
    ambiguous = np.array([0, 0, 0, 0, 0, 0, 0, 1, 0, 0], dtype=np.uint8)
    eot = np.zeros(10, dtype=bool)
    eot[9] = True
    hard = hard_tokens(labels, ambiguous, eot)
    # Edges: retain token 1 and forget token 2 meet; forget token 4 and retain token 5 meet.
    assert hard.nonzero()[0].tolist() == [1, 2, 4, 5, 7]


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.2, 0.45])
def test_structured_noise_hits_its_rate_and_puts_errors_where_it_says(rate):
    """The generator's flips: expected share = rate; every flip on a hard token while rate <= the
    hard share h; above it, every hard token flipped and the rest spread uniformly."""
    from tokenfilter.filtering.noise import hard_tokens

    labels, ambiguous, eot = _world_like_labels(400_000)
    hard = hard_tokens(labels, ambiguous, eot)
    share = hard.sum() / np.count_nonzero(~eot)
    assert 0.05 < share < 0.2
    plan = FilterPlan("mask", token_threshold=0.5, noise=rate, noise_seed=11, noise_structure="structured",
                      noise_hard_share=float(share))
    positions = np.arange(len(labels))
    truth = labels.astype(bool)
    flags = forget_flags(plan, labels.astype(np.float32), positions, 0, eot, hard)
    errors = flags != truth
    assert not errors[eot].any()
    assert abs(errors[~eot].mean() - rate) < 0.004  # ~5 SE at n = 400k
    if rate <= share:
        assert not errors[~hard].any()
        assert abs(errors[hard].mean() - rate / share) < 0.01
    else:
        assert errors[hard].all()
        easy = ~hard & ~eot
        assert abs(errors[easy].mean() - (rate - share) / (1 - share)) < 0.005
    # Uniform noise at the same rate spreads its errors: the hard tokens get only their share.
    uniform = forget_flags(FilterPlan("mask", token_threshold=0.5, noise=rate, noise_seed=11), labels.astype(np.float32),
                           positions, 0, eot) != truth
    assert abs(uniform[hard].mean() - rate) < 0.01
    # Deterministic per position: the same tokens flip whenever they are read.
    again = forget_flags(plan, labels[1000:3000].astype(np.float32), positions[1000:3000], 5, eot[1000:3000],
                         hard[1000:3000])
    assert np.array_equal(again, flags[1000:3000])


def test_structured_noise_without_truth_is_refused():
    with pytest.raises(ConfigError, match="ground-truth"):
        FilterPlan("mask", token_threshold=0.5, noise=0.1, noise_structure="structured")
