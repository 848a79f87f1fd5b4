"""The one judge interface: everything the paper asks an LLM, asked the same way of every judge.

The paper asks Claude (i) whether an SAE latent is about the forget domain, given its explanation
or top-activating contexts (§5.1), (ii) whether a sentence or document is forget-domain (§5.3,
§6.3), (iii) whether a free-response answer is correct, relevant and coherent (§4.2, App E), and
(iv) whether a response is a refusal (§4.4). Three judges answer them:

- ``world``: the built-in world's ground truth (:mod:`tokenfilter.judge.world`), with an optional
  error rate, so a judge's mistakes are a controlled quantity;
- ``provenance``: real corpora whose documents carry a domain from their source
  (:mod:`tokenfilter.judge.provenance`);
- ``http``: an LLM behind an OpenAI-compatible or Anthropic endpoint (:mod:`tokenfilter.judge.http`).

Each question is a small dataclass carrying what any judge might need; a judge reads the fields
it can use (the world judge reads ground-truth spans, the provenance judge a source domain, the
HTTP judge only text).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from tokenfilter.errors import TokenfilterError

Span = tuple[int, int]
CRITERIA = ("correct", "relevant", "coherent")


class JudgeError(TokenfilterError):
    """A judge could not answer (a malformed reply, an exhausted retry budget, a missing key)."""


@dataclass(frozen=True)
class ActivationContext:
    """One top-activating context of an SAE latent."""

    text: str
    highlight: tuple[Span, ...]  # character spans of the activating tokens in ``text``
    activation: float
    source_domain: str | None = None  # the document's domain from its source (provenance judge)
    forget_spans: tuple[Span, ...] | None = None  # ground-truth forget characters of ``text`` (world judge)


@dataclass(frozen=True)
class LatentEvidence:
    latent: int
    contexts: tuple[ActivationContext, ...]
    explanation: str | None = None  # a description of the latent, where one exists


@dataclass(frozen=True)
class TextItem:
    """A sentence or a document to classify as forget-domain or not."""

    text: str
    level: str = "document"  # "sentence" | "document"
    context: str | None = None  # the document around a sentence (the paper labels sentences in context)
    source_domain: str | None = None
    forget_spans: tuple[Span, ...] | None = None


@dataclass(frozen=True)
class AnswerItem:
    """A question, a model's answer, and what is known about the right answer."""

    question: str
    answer: str
    reference: str | None = None  # a correct answer, where one exists
    subject: str | None = None  # built-in world: the fact's subject ...
    expected: str | None = None  # ... and its object
    relation: str | None = None
    extra: dict = field(default_factory=dict)


class Judge(abc.ABC):
    """What every judge answers. Each method returns True for YES."""

    name = "judge"

    @abc.abstractmethod
    def latent_is_forget(self, evidence: LatentEvidence) -> bool:
        """Is this SAE latent about the forget domain?"""

    @abc.abstractmethod
    def text_is_forget(self, item: TextItem) -> bool:
        """Is this sentence / document forget-domain text?"""

    @abc.abstractmethod
    def answer_quality(self, item: AnswerItem) -> dict[str, bool]:
        """{criterion: verdict} for correct, relevant, coherent (paper App E's three questions)."""

    @abc.abstractmethod
    def is_refusal(self, item: AnswerItem) -> bool:
        """Does the answer refuse the question?"""
