"""Text evaluation and the ground-truth filter source."""

import numpy as np
import torch

from tokenfilter.annotate import annotate_truth, open_scores, truth_token_scores
from tokenfilter.evaluate import text_loss
from tokenfilter.model import TokenFilterConfig, TokenFilterForCausalLM
from tokenfilter.shards import TokenShard


def test_text_loss_is_the_token_mean_cross_entropy(tiny_world):
    shard = TokenShard.open(tiny_world["shards"]["eval_forget"])
    torch.manual_seed(0)
    model = TokenFilterForCausalLM(TokenFilterConfig(vocab_size=448, n_layer=1, n_embd=16, n_head=2, block_size=16)).eval()
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


def test_annotation_matches_the_shard_and_never_scores_end_of_text(tiny_world, tmp_path):
    annotate_truth(tiny_world["shards"]["train"], tmp_path / "truth", context_window=4)
    shard = TokenShard.open(tiny_world["shards"]["train"])
    scores, doc_scores = open_scores(tmp_path / "truth")
    assert len(scores) == shard.n_tokens and len(doc_scores) == len(shard.docs)
    eot = shard.meta["special_ids"]["eot"]
    assert (np.asarray(scores)[np.asarray(shard.tokens) == eot] == 0).all()
    assert ((np.asarray(scores) >= 0.5) == (np.asarray(shard.labels) == 1)).all()
    np.testing.assert_allclose(doc_scores, shard.docs["n_forget"] / (shard.docs["length"] - 1), rtol=1e-6)
