"""Training windows: which tokens a step reads, for every arm and across resumes."""

import numpy as np

from tokenfilter.filtering.annotation import truth_document_scores
from tokenfilter.filtering.arms import FilterPlan, kept_documents
from tokenfilter.data.shards import TokenShard
from tokenfilter.train.windows import TrainingWindows


def test_windows_are_a_function_of_seed_and_index(tiny_world):
    shard = TokenShard.open(tiny_world["shards"]["train"])
    a = TrainingWindows(shard, None, 32, seed=1)
    b = TrainingWindows(shard, None, 32, seed=1)
    idx = np.arange(100, 140)
    assert np.array_equal(a.positions(idx), b.positions(idx))
    assert not np.array_equal(a.positions(idx), TrainingWindows(shard, None, 32, seed=2).positions(idx))
    # Consecutive positions within a window, and one epoch visits each window once.
    pos = a.positions(np.arange(a.n_windows))
    assert (np.diff(pos, axis=1) == 1).all()
    assert len(np.unique(pos[:, 0])) == a.n_windows


def test_document_arm_windows_never_read_dropped_documents(tiny_world):
    shard = TokenShard.open(tiny_world["shards"]["train"])
    doc_scores = truth_document_scores(shard)
    plan = FilterPlan("document", document_threshold=0.3)
    kept = kept_documents(plan, doc_scores)
    assert 0 < kept.sum() < len(kept)
    windows = TrainingWindows(shard, kept, 32, seed=0)
    pos = windows.positions(np.arange(windows.n_windows * 2))  # two epochs
    docs_read = np.unique(shard.doc_index_of(pos.ravel()))
    assert kept[docs_read].all()
    assert windows.n_stream_tokens == shard.docs["length"][kept].sum()
    # Tokens come out in document order inside a window: the virtual stream is exact.
    w = windows.positions(np.array([3]))[0]
    stream = np.concatenate([np.arange(s, s + n) for s, n in zip(shard.docs["start"][kept], shard.docs["length"][kept])])
    local = windows._order(0)[3]
    assert np.array_equal(w, stream[local * 32: local * 32 + 33])


def test_end_of_text_tokens_stay_in_the_stream(tiny_world):
    """Trap 4: documents keep their end-of-text token; no token id is dropped from the stream."""
    shard = TokenShard.open(tiny_world["shards"]["train"])
    eot = shard.meta["special_ids"]["eot"]
    ends = shard.docs["start"] + shard.docs["length"] - 1
    assert (np.asarray(shard.tokens)[ends] == eot).all()
    windows = TrainingWindows(shard, None, 64, seed=0)
    toks = windows.tokens(windows.positions(np.arange(windows.n_windows)))
    assert (toks == eot).sum() >= 0.95 * len(shard.docs) * (windows.n_windows * 64) / shard.n_tokens
