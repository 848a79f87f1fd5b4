"""The ``provenance`` judge: for real corpora whose documents carry a domain from their source.

With ``data.source: files`` each file glob names a domain (PubMed files are forget, bioRxiv
retain-near, ...). Without an LLM, that provenance is the best label there is:

- a document inherits its source's domain, and a sentence its document's;
- a latent is forget-domain when most of its top-activating contexts (more than
  ``majority`` of them) come from forget-domain documents.

It cannot judge answers or refusals (nothing about an answer comes from a source): those need
the ``world`` judge (built-in world) or the ``http`` judge.
"""

from __future__ import annotations

from tokenfilter.judge.base import AnswerItem, Judge, JudgeError, LatentEvidence, TextItem

FORGET = "forget"


class ProvenanceJudge(Judge):
    name = "provenance"

    def __init__(self, majority: float = 0.5):
        self.majority = majority

    def latent_is_forget(self, evidence: LatentEvidence) -> bool:
        domains = [c.source_domain for c in evidence.contexts]
        if not domains or any(d is None for d in domains):
            raise JudgeError(f"latent {evidence.latent}: the provenance judge needs the source domain of every "
                             "top-activating context")
        return sum(d == FORGET for d in domains) / len(domains) > self.majority

    def text_is_forget(self, item: TextItem) -> bool:
        if item.source_domain is None:
            raise JudgeError("the provenance judge needs the text's source domain")
        return item.source_domain == FORGET

    def answer_quality(self, item: AnswerItem) -> dict[str, bool]:
        raise JudgeError("the provenance judge cannot judge answers: set judge.kind to 'world' (built-in world) "
                         "or 'http' (an LLM)")

    def is_refusal(self, item: AnswerItem) -> bool:
        raise JudgeError("the provenance judge cannot judge refusals: set judge.kind to 'world' (built-in world) "
                         "or 'http' (an LLM)")
