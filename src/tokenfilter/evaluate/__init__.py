"""Evaluation of trained models: text losses on held-out text (``text``); multiple-choice
benchmarks through lm-eval (``benchmarks``); sampled free-response answers (``generation``) judged
correct, relevant and coherent (``free_response``); refusal rates (``refusal``); linear probes on
the residual stream (``probes``); and the capability stage's jobs, report and claims
(``capabilities``, ``report``, ``claims``), with the download of the paper's benchmarks
(``downloads``)."""
