"""Robustness to relearning: RMU unlearning (``rmu``) and tokens-to-parity of adversarial finetuning (``parity``)."""
