"""Documents of the built-in world, each with exact character spans of its forget text.

A document is a sequence of sentences from one or more *passages*. Every sentence knows which of
its characters are forget text, so the ground truth is exact: a whole medical sentence, or the
bracketed medical clause of a light mention. Document kinds and their shares are calibrated to
the paper's App C.2 statistics of FineWeb-Edu: about 23% of documents hold no forget token and
about 37% are more than 10% forget.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from tokenfilter.data.synthetic.templates import (AMBIGUOUS_WORDS, DISCOURSE, FILLER_TEMPLATES, FILLER_WORDS, FIXED_TYPES,
                                                  LIGHT_MENTIONS, PARTITIONS)
from tokenfilter.data.synthetic.world import World

Span = tuple[int, int]
Sentence = tuple[str, list[Span]]

HOST_DOMAIN = {"general": "retain_far", "biology": "retain_near", "medical": "forget"}

# Document kinds of the pretraining corpus; light = a few medical clauses in retain text,
# mixed = retain text with whole medical passages. Their shares are config (``documents.kinds``).
DOCUMENT_KINDS = ("pure_general", "pure_biology", "light_general", "light_biology", "mixed_general",
                  "mixed_biology", "pure_medical")


@dataclass
class DocumentParams:
    """The document recipe (config ``data.synthetic.documents``; defaults in the config schema,
    calibrated to the paper's App C.2 statistics)."""

    kinds: dict[str, float]  # share of each document kind (DOCUMENT_KINDS)
    median_sentences: float  # long-tailed (log-normal) document lengths
    length_sigma: float
    min_sentences: int
    max_sentences: int
    light_min_sentences: int  # a light mention stays a small share of the document
    light_sentences_per_mention: int
    mixed_forget_share: tuple[float, float]
    mixed_only_preference: float  # chance a biology sentence of a mixed doc is mixed-only
    fact_share: float  # sentence mix of a retain passage: facts, discourse, filler
    discourse_share: float
    medical_fact_share: float  # the rest of a medical passage is medical discourse
    # Unlabelled ordinary language inside medical documents: in the paper only about half the
    # tokens of documents judged medical are medical (App C.2), and a filtered model's loss on
    # PubMed text mixes ordinary language with medical terms.
    medical_filler_share: float
    paragraph_break: float
    doc_label_min_forget: float  # a document is a forget document at this forget share


_SLOT = re.compile(r"\{(\w+)\}")
_ARTICLE = re.compile(r"\b([Aa]) ([aeiou])")


@functools.lru_cache(maxsize=None)
def _zipf_cdf(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    cdf = np.cumsum(weights) / weights.sum()
    cdf[-1] = 1.0 + 1e-12
    return cdf


SUBDOMAINS = ("infectious", "neurological")


class DocumentWriter:
    """Writes documents of the world with a private random stream, from one partition of the
    sentence templates (``train`` for pretraining, ``eval`` for held-out eval text, ``attack``
    for the attacker's finetuning corpus)."""

    def __init__(self, world: World, params: DocumentParams, rng: np.random.Generator, partition: str = "train",
                 avoid=None):
        if partition not in PARTITIONS:
            raise ValueError(f"partition {partition!r} is not one of {PARTITIONS}")
        self.world = world
        self.p = params
        self.rng = rng
        self.partition = partition
        # Held-out writers redraw a fact-free sentence that pretraining already contains
        # (a derived.PretrainingIndex of the training corpus).
        self.avoid = avoid
        self._cum_weights: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    # --- sampling helpers -------------------------------------------------------------------
    def _pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def _fact_index(self, domain: str, mixed_only: bool | None, subdomain: str | None = None) -> int:
        key = (domain, mixed_only, subdomain)
        if key not in self._cum_weights:
            idx = self.world.facts_of(domain, mixed_only)
            if subdomain is not None:
                idx = np.array([i for i in idx if self.world.facts[i].subdomain == subdomain], dtype=np.int64)
            if len(idx) == 0:  # tiny worlds may have no fact of a category
                idx = self.world.facts_of(domain)
            cum = np.cumsum(self.world.popularity[idx])
            self._cum_weights[key] = (idx, cum / cum[-1])
        idx, cum = self._cum_weights[key]
        return int(idx[np.searchsorted(cum, self.rng.random(), side="right").clip(0, len(idx) - 1)])

    def _fill(self, template: str, values: dict[str, str] | None = None) -> str:
        values = values or {}

        def entity(match: re.Match) -> str:
            slot = match.group(1)
            if slot in values:
                return values[slot]
            lower = slot.lower()
            if slot[0].isupper() and lower in values:
                return values[lower][:1].upper() + values[lower][1:]
            if lower in self.world.entities or lower in self.world.aliases:
                name = self._pick(self.world.pool(lower))
                return name[:1].upper() + name[1:] if slot[0].isupper() else name
            raise KeyError(f"template slot {slot!r} has no value: {template!r}")

        return _SLOT.sub(entity, template)

    # --- sentences ----------------------------------------------------------------------------
    def fact_sentence(self, fact_id: int) -> str:
        fact = self.world.facts[fact_id]
        relation = self.world.relations[fact.relation]
        frames = fact_frames(relation, fact_id)[self.partition]
        return self._fill(self._pick(frames), {"s": fact.subject, "o": fact.object})

    def _held_out(self, draw) -> str:
        """A sentence from ``draw()``, redrawn (up to 100 times) while pretraining contains it."""
        text = draw()
        for _ in range(100):
            if self.avoid is None or not self.avoid.collides(text):
                break
            text = draw()
        return text

    def discourse_sentence(self, domain: str) -> str:
        return self._held_out(lambda: self._fill(self._pick(_pooled(DISCOURSE[domain]))))

    def filler_sentence(self) -> str:
        return self._held_out(self._filler_sentence)

    def _filler_sentence(self) -> str:
        r = self.rng

        def word(match: re.Match) -> str:
            slot = match.group(1)
            base = slot.rstrip("0123456789").lower()
            pool = FIXED_TYPES["number"] if base == "number" else FILLER_WORDS[base]
            # Zipf-like: word k of a pool is drawn with weight 1/k.
            choice = pool[int(np.searchsorted(_zipf_cdf(len(pool)), r.random(), side="right"))]
            return choice[:1].upper() + choice[1:] if slot[0].isupper() else choice

        text = _SLOT.sub(word, self._pick(_pooled(FILLER_TEMPLATES)))
        return _ARTICLE.sub(r"\1n \2", text)

    def retain_sentence(self, domain: str, mixed_only: bool | None) -> Sentence:
        u = self.rng.random()
        if u < self.p.fact_share:
            return self.fact_sentence(self._fact_index(domain, mixed_only)), []
        if u < self.p.fact_share + self.p.discourse_share:
            return self.discourse_sentence(domain), []
        return self.filler_sentence(), []

    def medical_sentence(self, subdomain: str | None = None) -> Sentence:
        if self.rng.random() < self.p.medical_fact_share:
            text = self.fact_sentence(self._fact_index("forget", None, subdomain))
        else:
            text = self.discourse_sentence("forget")
        return text, [(0, len(text))]

    def light_mention(self, domain: str) -> Sentence:
        marked = self._fill(self._pick(LIGHT_MENTIONS[domain]))
        text, spans, pos = [], [], 0
        start = None
        for ch in marked:
            if ch == "[":
                start = pos
            elif ch == "]":
                spans.append((start, pos))
            else:
                text.append(ch)
                pos += 1
        return "".join(text), spans

    # --- documents ------------------------------------------------------------------------------
    def n_sentences(self, minimum: int | None = None) -> int:
        n = int(round(np.exp(np.log(self.p.median_sentences) + self.p.length_sigma * self.rng.standard_normal())))
        return int(np.clip(n, max(minimum or 0, self.p.min_sentences), self.p.max_sentences))

    def subdomain(self) -> str:
        """The forget sub-domain of a document's medical text (each document keeps to one)."""
        return SUBDOMAINS[int(self.rng.integers(len(SUBDOMAINS)))]

    def pure(self, domain: str, mixed_only: bool | None, subdomain: str | None = None) -> list[Sentence]:
        n = self.n_sentences()
        if domain == "forget":
            return [
                (self.filler_sentence(), []) if self.rng.random() < self.p.medical_filler_share
                else self.medical_sentence(subdomain)
                for _ in range(n)
            ]
        return [self.retain_sentence(domain, mixed_only) for _ in range(n)]

    def light(self, domain: str) -> list[Sentence]:
        n = self.n_sentences(self.p.light_min_sentences)
        sentences = [self.retain_sentence(domain, False) for _ in range(n)]
        n_mentions = max(1, n // self.p.light_sentences_per_mention)
        for i in self.rng.choice(n, size=n_mentions, replace=False):
            sentences[i] = self.light_mention(domain)
        return sentences

    def mixed(self, domain: str, subdomain: str | None = None) -> list[Sentence]:
        n = self.n_sentences(4)
        lo, hi = self.p.mixed_forget_share
        n_forget = int(np.clip(round(self.rng.uniform(lo, hi) * n), 1, n - 1))
        host = []
        for _ in range(n - n_forget):
            prefer_mixed = self.rng.random() < self.p.mixed_only_preference
            host.append(self.retain_sentence(domain, True if prefer_mixed else None))
        # Medical sentences come in 1-3 contiguous passages inserted among the host sentences.
        n_passages = int(min(n_forget, self.rng.integers(1, 4)))
        cuts = np.sort(self.rng.choice(np.arange(1, n_forget), size=n_passages - 1, replace=False)) if n_passages > 1 else []
        sizes = np.diff(np.concatenate([[0], cuts, [n_forget]])).astype(int)
        positions = np.sort(self.rng.integers(0, len(host) + 1, size=n_passages))
        out: list[Sentence] = []
        host_i = 0
        for size, position in zip(sizes, positions):
            out.extend(host[host_i:position])
            host_i = max(host_i, position)
            out.extend(self.medical_sentence(subdomain) for _ in range(size))
        out.extend(host[host_i:])
        return out

    def compose(self, sentences: list[Sentence]) -> tuple[str, list[Span]]:
        parts: list[str] = []
        spans: list[Span] = []
        pos = 0
        for i, (sentence, local_spans) in enumerate(sentences):
            if i > 0:
                sep = "\n\n" if self.rng.random() < self.p.paragraph_break else " "
                parts.append(sep)
                pos += len(sep)
            parts.append(sentence)
            spans.extend((pos + s, pos + e) for s, e in local_spans)
            pos += len(sentence)
        # Adjacent forget sentences form one span (they are one passage).
        merged: list[Span] = []
        for s, e in spans:
            if merged and "".join(parts)[merged[-1][1]:s].strip() == "":
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        return "".join(parts), merged

    def document(self, kind: str) -> tuple[str, list[Span], str, str | None]:
        """One pretraining document of ``kind``: (text, forget spans, domain field, forget sub-domain)."""
        style, host = kind.split("_", 1)
        domain = HOST_DOMAIN[host]
        if style == "pure":
            # Pure biology text never carries mixed-only facts: those live in mixed documents.
            subdomain = self.subdomain() if domain == "forget" else None
            sentences = self.pure(domain, False if domain == "retain_near" else None, subdomain)
            return (*self.compose(sentences), domain, subdomain)
        if style == "light":
            return (*self.compose(self.light(domain)), "mixed", None)
        if style == "mixed":
            subdomain = self.subdomain()
            return (*self.compose(self.mixed(domain, subdomain)), "mixed", subdomain)
        raise ValueError(f"unknown document kind {kind!r}")

    def held_out_document(self, domain: str, subdomain: str | None = None) -> tuple[str, list[Span]]:
        """A pure document of ``domain`` drawing on ALL its facts (mixed-only included), in this
        writer's partition (held-out eval text, or the attacker's corpus)."""
        return self.compose(self.pure(domain, None, subdomain))


def fact_frames(relation, fact_id: int) -> dict[str, list[str]]:
    """The sentence frames that state fact ``fact_id`` in each partition. All frames of the
    relation are pooled; each fact gets one eval frame and one attack frame of its own, and
    pretraining states it in the others. So every frame (and every word) occurs in pretraining,
    while a held-out sentence of a fact is one pretraining never contains. (A first version gave
    each partition its own frames; the eval frames then held words pretraining never saw, and a
    model's eval loss measured its surprise at those words, not what it knew.)"""
    frames = _pooled(relation.statements)
    n = len(frames)
    eval_at = fact_id % n
    attack_at = (eval_at + 1 + (fact_id // n) % (n - 1)) % n
    return {"eval": [frames[eval_at]], "attack": [frames[attack_at]],
            "train": [f for k, f in enumerate(frames) if k not in (eval_at, attack_at)]}


def _pooled(by_partition: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Every partition's frames in one tuple, in partition order."""
    return tuple(t for part in PARTITIONS for t in by_partition[part])


def ambiguous_spans(text: str) -> list[Span]:
    """Character spans of the words whose domain depends on context (:data:`AMBIGUOUS_WORDS`)."""
    return [(m.start(), m.end()) for m in _AMBIGUOUS.finditer(text)]


_AMBIGUOUS = re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, AMBIGUOUS_WORDS), key=len, reverse=True)) + r")\b",
                        re.IGNORECASE)


def forget_fraction(text: str, spans: list[Span]) -> float:
    return sum(e - s for s, e in spans) / max(1, len(text))


def iter_documents(world: World, params: DocumentParams, n_docs: int,
                   seed: int) -> Iterator[tuple[str, list[Span], str, str, str | None]]:
    """Yield ``n_docs`` pretraining documents as (text, spans, domain, kind, sub-domain), deterministically."""
    rng = np.random.default_rng([seed, 2])
    writer = DocumentWriter(world, params, rng)
    # A fixed order, whatever the config's key order: reordering keys must not change the corpus.
    kinds = [k for k in DOCUMENT_KINDS if k in params.kinds]
    weights = np.asarray([params.kinds[k] for k in kinds], dtype=float)
    weights /= weights.sum()
    for kind_index in rng.choice(len(kinds), size=n_docs, p=weights):
        kind = kinds[int(kind_index)]
        text, spans, domain, subdomain = writer.document(kind)
        yield text, spans, domain, kind, subdomain
