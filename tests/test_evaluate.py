"""Text evaluation, the ground-truth filter source and scattered annotation."""

import numpy as np
import pytest
import torch

from tokenfilter.filtering.annotation import annotate, open_scores, part_range, truth_token_scores
from tokenfilter.evaluate.text import text_loss
from tokenfilter.model import GPT, GPTConfig
from tokenfilter.data.shards import TokenShard


def test_text_loss_is_the_token_mean_cross_entropy(tiny_world):
    shard = TokenShard.open(tiny_world["shards"]["eval_forget"])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=448, n_layer=1, n_embd=16, n_head=2, block_size=16)).eval()
    result = text_loss(model, shard, max_tokens=16 * 10, batch_size=3)
    tokens = torch.from_numpy(np.asarray(shard.tokens[: 16 * 10 + 1], dtype=np.int64))
    windows = torch.stack([tokens[i * 16: i * 16 + 17] for i in range(10)])
    with torch.no_grad():
        logp = torch.log_softmax(model(windows[:, :-1]).logits, -1)
    expected = -logp.gather(-1, windows[:, 1:, None]).mean()
    assert result["n_tokens"] == 160
    assert abs(result["loss"] - float(expected)) < 1e-5
    # Split by the target's ground-truth label; the two parts average back to the whole.
    n_f, n_r = result["n_forget_targets"], result["n_retain_targets"]
    assert n_f + n_r == 160
    both = (result["loss_forget_targets"] * n_f + result["loss_retain_targets"] * n_r) / 160
    assert abs(both - result["loss"]) < 1e-5


def test_truth_scores_select_exactly_the_labels_at_one_half():
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0], dtype=np.uint8)
    scores = truth_token_scores(labels, context_window=2)
    assert ((scores >= 0.5) == labels.astype(bool)).all()
    # Within a class, tokens with more forget context rank higher: the inside of a passage
    # before its edge, a retain token next to a passage before one further away.
    assert scores[4] > scores[2] > scores[12]
    assert scores[8] > scores[9] > 0


TRUTH = {"kind": "truth", "context_window": 4, "error_rate": 0.0}


def test_annotation_matches_the_shard_and_never_scores_end_of_text(tiny_world, tmp_path):
    annotate(TRUTH, tiny_world["shards"]["train"], tmp_path / "truth", seed=0)
    shard = TokenShard.open(tiny_world["shards"]["train"])
    scores, doc_scores = open_scores(tmp_path / "truth")
    assert len(scores) == shard.n_tokens and len(doc_scores) == len(shard.docs)
    eot = shard.meta["special_ids"]["eot"]
    assert (np.asarray(scores)[np.asarray(shard.tokens) == eot] == 0).all()
    assert ((np.asarray(scores) >= 0.5) == (np.asarray(shard.labels) == 1)).all()
    np.testing.assert_allclose(doc_scores, shard.docs["n_forget"] / (shard.docs["length"] - 1), rtol=1e-6)


def test_scattered_annotation_equals_one_pass(tiny_world, tmp_path):
    """Parts are contiguous token ranges scored separately (as the workflow's scattered jobs do)
    and gathered; with a non-zero error rate and forget spans crossing part boundaries, the result
    is byte-for-byte the unscattered annotation."""
    shard = TokenShard.open(tiny_world["shards"]["train"])
    labels = np.asarray(shard.labels)
    spec = dict(TRUTH, error_rate=0.11)
    annotate(spec, shard.directory, tmp_path / "one", seed=3, n_parts=1)
    one = {name: (tmp_path / "one" / name).read_bytes() for name in ("token_scores.bin", "doc_scores.npy")}
    def cuts_inside_spans(n_parts):
        cuts = [part_range(shard.n_tokens, i, n_parts)[0] for i in range(1, n_parts)]
        return sum(int(labels[c - 1] == 1 and labels[c] == 1) for c in cuts)

    # Three parts, plus the smallest part counts whose boundaries cut through a forget span.
    crossing = [n for n in range(4, 60) if cuts_inside_spans(n)][:2]
    assert crossing, "no part count up to 60 cuts a forget span"
    for n_parts in [3, *crossing]:
        annotate(spec, shard.directory, tmp_path / f"parts{n_parts}", seed=3, n_parts=n_parts)
        for name, expected in one.items():
            assert (tmp_path / f"parts{n_parts}" / name).read_bytes() == expected, (n_parts, name)
    scores, _ = open_scores(tmp_path / "one")
    flipped = (np.asarray(scores) >= 0.5) != (labels == 1)
    text = np.asarray(shard.tokens) != shard.meta["special_ids"]["eot"]
    assert 0.08 < flipped[text].mean() < 0.14  # the simulated classifier errs at its rate


def test_gather_refuses_parts_that_do_not_tile_the_shard(tiny_world, tmp_path):
    from tokenfilter.filtering.annotation import annotate_part, gather_parts

    shard = tiny_world["shards"]["train"]
    for i in (0, 2):  # part 1 of 3 is missing
        annotate_part(TRUTH, shard, i, 3, 0, tmp_path / f"p{i}")
    with pytest.raises(ValueError, match="do not tile"):
        gather_parts([tmp_path / "p0", tmp_path / "p2"], shard, TRUTH, tmp_path / "out")
    assert not (tmp_path / "out").exists()
