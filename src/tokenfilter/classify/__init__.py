"""The classifier stage (paper §5.2–5.3, Table 1; §6.3): cheap token and document classifiers
distilled from token labels, and the experiments on them.

- ``bilm``: the bidirectional LM: the right-to-left half's batch source (:class:`ReversedBatches`)
  and training (:func:`train_half`), aligned biLM features (:func:`bilm_features`) and windowed
  features of long token streams (:class:`Windowing`, :func:`features_of_shard`).
- ``probe``: logistic-regression probes (L-BFGS, C sweep, layer sweep, F1-max threshold), their
  file format, and metrics (precision / recall / F1 / AUROC).
- ``document``: the document probe on mean-pooled features (§5.3).
- ``baselines``: the context-free baseline p(forget | token id); the masked-LM encoder baseline's
  names (from ``mlm``).
- ``mlm``: the RoBERTa-style encoder baseline of Table 1: the encoder, the ``"mlm"`` training
  objective of the one loop, and encoder features.
- ``granularity``: token labels inherited from sentence or document labels (§6.3, Fig 14 / 25).
- ``weak_to_strong``: weak-to-strong generalisation of probes and the PGR (§6.3, Fig 15).
- ``annotate``: a saved classifier directory and :func:`score_range`, how ``filter kind:
  classifier`` scores a part of the corpus.
"""
