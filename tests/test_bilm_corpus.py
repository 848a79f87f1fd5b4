"""The forget-upsampled biLM corpus (paper Table 1: 'upsample PubMed'): which documents and the
shard it writes (the end-to-end run trains one: .test/config.yaml)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfilter.classify.bilm import upsample_shard, upsampled_documents
from tokenfilter.data.corpus import iter_corpus
from tokenfilter.data.shards import TokenShard
from tokenfilter.errors import ConfigError


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.booleans()), min_size=2, max_size=80),
       st.floats(0.05, 0.95), st.integers(0, 3))
def test_upsampling_reaches_the_share_and_keeps_every_document(docs, share, seed):
    lengths = np.array([n for n, _ in docs])
    forget = np.array([f for _, f in docs])
    if not forget.any():
        with pytest.raises(ConfigError, match="no forget-domain"):
            upsampled_documents(lengths, forget, share, seed)
        return
    picked = upsampled_documents(lengths, forget, share, seed)
    assert set(picked.tolist()) == set(range(len(docs)))  # every document at least once
    assert np.bincount(picked, minlength=len(docs))[~forget].max(initial=1) == 1  # retain documents never repeat
    got = lengths[picked][forget[picked]].sum() / lengths[picked].sum()
    before = lengths[forget].sum() / lengths.sum()
    if share <= before:
        assert len(picked) == len(docs)
    else:  # overshoots by at most one document
        assert share <= got <= (share * lengths[picked].sum() + lengths.max()) / lengths[picked].sum() + 1e-9


def test_the_upsampled_shard_holds_whole_documents_with_their_labels(tiny_world, tmp_path):
    shard_dir = tiny_world["shards"]["train"]
    meta = upsample_shard(shard_dir, tiny_world["out"]["corpus"], tmp_path / "up", 0.5, seed=0)
    source, up = TokenShard.open(shard_dir), TokenShard.open(tmp_path / "up")
    assert meta["forget_domain_share"]["before"] < 0.5 <= meta["forget_domain_share"]["after"] < 0.55
    assert up.n_tokens == int(up.docs["length"].sum()) and up.meta["n_forget_tokens"] == int(up.docs["n_forget"].sum())
    where = {int(d): i for i, d in enumerate(source.docs["doc_id"])}
    for record in up.docs[::37]:
        original = source.docs[where[int(record["doc_id"])]]
        a, b = int(original["start"]), int(original["start"] + original["length"])
        c, d = int(record["start"]), int(record["start"] + record["length"])
        assert np.array_equal(source.tokens[a:b], up.tokens[c:d])
        assert np.array_equal(source.labels[a:b], up.labels[c:d])
        assert up.tokens[d - 1] == source.meta["special_ids"]["eot"]  # boundaries kept (trap 4)
    forget_ids = {int(r["doc_id"]) for r in iter_corpus(tiny_world["out"]["corpus"], ["doc_id", "domain"])
                  if r["domain"] == "forget"}
    repeated = {int(d) for d, n in zip(*np.unique(up.docs["doc_id"], return_counts=True)) if n > 1}
    assert repeated and repeated <= forget_ids

