"""Post-training data (paper §3.3, §4.4, App A.3): instruction MCQs, chat and refusal examples as
tokenised fine-tuning examples for :mod:`tokenfilter.train.finetuning` (``formats``)."""
