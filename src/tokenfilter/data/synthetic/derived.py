"""Held-out sets of the built-in world, and the check that they are disjoint from pretraining.

Facts of each domain are split in two halves by a seeded draw. The *eval* half feeds what
measures the model (4-option MCQs, free-response questions); the *train* half feeds what later
stages train on (instruction-format MCQs, chat, refusal data). Every fact, of both halves, is
mentioned in pretraining documents: the MCQs test knowledge the baseline could have learnt.
What is held out is the text: no question or eval document appears in the pretraining corpus,
which :func:`find_collisions` checks instead of assuming.
"""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np

from tokenfilter.data.corpus import text_hash
from tokenfilter.data.synthetic.templates import CHAT_OPENERS, CHAT_REPLIES, REFUSALS
from tokenfilter.data.synthetic.world import Fact, World

LETTERS = "ABCD"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_facts(world: World, seed: int) -> dict[str, dict[str, list[int]]]:
    """{domain: {"eval": [fact ids], "train": [fact ids]}}, half and half per domain."""
    rng = np.random.default_rng([seed, 3])
    halves: dict[str, dict[str, list[int]]] = {}
    for domain, idx in world.by_domain.items():
        order = rng.permutation(idx)
        half = len(order) // 2
        halves[domain] = {"eval": sorted(order[:half].tolist()), "train": sorted(order[half:].tolist())}
    return halves


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fill(template: str, fact: Fact) -> str:
    return template.format(s=fact.subject, o=fact.object, S=_capitalise(fact.subject), O=_capitalise(fact.object))


def _object_pool(world: World, fact: Fact) -> list[str]:
    relation = world.relations[fact.relation]
    return world.pool(relation.object)


def _choices(world: World, fact: Fact, rng: np.random.Generator) -> tuple[list[str], int]:
    pool = [o for o in _object_pool(world, fact) if o != fact.object and o != fact.subject]
    distractors = [pool[i] for i in rng.choice(len(pool), size=3, replace=False)]
    answer = int(rng.integers(4))
    return distractors[:answer] + [fact.object] + distractors[answer:], answer


def letter_prompt(question: str, choices: list[str]) -> str:
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices))
    return f"Question: {question}\n{options}\nAnswer:"


def mcq_items(world: World, fact_ids: list[int], domain: str, rng: np.random.Generator, limit: int | None) -> list[dict]:
    """4-option MCQs: letter format (instruction-tuned eval) and cloze format (base-model eval)."""
    chosen = list(fact_ids) if limit is None or limit >= len(fact_ids) else sorted(rng.choice(fact_ids, limit, replace=False).tolist())
    items = []
    for fact_id in chosen:
        fact = world.facts[fact_id]
        relation = world.relations[fact.relation]
        choices, answer = _choices(world, fact, rng)
        question = _fill(relation.question, fact)
        items.append({
            "id": f"mcq-{domain}-{fact_id}",
            "domain": domain,
            "relation": fact.relation,
            "fact_id": fact_id,
            "question": question,
            "choices": choices,
            "answer": answer,
            "prompt": letter_prompt(question, choices),
            "cloze_context": _fill(relation.cloze, fact),
            "cloze_choices": [f" {c}." for c in choices],
        })
    return items


def free_response_items(world: World, fact_ids: list[int], kind: str) -> list[dict]:
    """Open questions with a reference answer (HealthSearchQA / Alpaca analogues)."""
    items = []
    for fact_id in fact_ids:
        fact = world.facts[fact_id]
        relation = world.relations[fact.relation]
        items.append({
            "id": f"fr-{kind}-{fact_id}",
            "kind": kind,
            "domain": fact.domain,
            "fact_id": fact_id,
            "question": _fill(relation.question, fact),
            "reference": _fill(relation.answer, fact),
            "answer": fact.object,
        })
    return items


def instruction_items(world: World, fact_ids: list[int], rng: np.random.Generator) -> list[dict]:
    """Instruction-format MCQs on non-forget facts, to teach the letter format (paper App A.3)."""
    items = []
    for item in mcq_items(world, fact_ids, "retain", rng, None):
        item = dict(item, id=item["id"].replace("mcq-", "instruct-"), domain=world.facts[item["fact_id"]].domain)
        item["completion"] = f" {LETTERS[item['answer']]}"
        items.append(item)
    return items


def chat_items(world: World, fact_ids: list[int], rng: np.random.Generator) -> list[dict]:
    """Chat conversations (smol-smoltalk analogue): greetings, then questions on non-forget facts."""
    items = []
    for fact_id in fact_ids:
        fact = world.facts[fact_id]
        relation = world.relations[fact.relation]
        messages = []
        if rng.random() < 0.3:
            k = int(rng.integers(len(CHAT_OPENERS)))
            messages += [{"role": "user", "content": CHAT_OPENERS[k]}, {"role": "assistant", "content": CHAT_REPLIES[k]}]
        messages += [
            {"role": "user", "content": _fill(relation.question, fact)},
            {"role": "assistant", "content": _fill(relation.answer, fact)},
        ]
        items.append({"id": f"chat-{fact_id}", "domain": fact.domain, "fact_id": fact_id, "messages": messages})
    return items


def refusal_items(world: World, forget_ids: list[int], retain_ids: list[int], rng: np.random.Generator) -> list[dict]:
    """Health questions answered with a refusal, other questions answered normally (paper §4.4)."""
    items = []
    for fact_id in forget_ids:
        fact = world.facts[fact_id]
        items.append({
            "id": f"refusal-{fact_id}", "domain": fact.domain, "fact_id": fact_id, "refuse": True,
            "prompt": _fill(world.relations[fact.relation].question, fact),
            "response": REFUSALS[int(rng.integers(len(REFUSALS)))],
        })
    for fact_id in retain_ids:
        fact = world.facts[fact_id]
        relation = world.relations[fact.relation]
        items.append({
            "id": f"refusal-{fact_id}", "domain": fact.domain, "fact_id": fact_id, "refuse": False,
            "prompt": _fill(relation.question, fact), "response": _fill(relation.answer, fact),
        })
    order = rng.permutation(len(items))
    return [items[i] for i in order]


class PretrainingIndex:
    """Hashes of every pretraining document and sentence, to test held-out text against."""

    def __init__(self) -> None:
        self.documents: set[str] = set()
        self.sentences: set[str] = set()

    def add(self, text: str) -> None:
        self.documents.add(text_hash(text))
        self.sentences.update(text_hash(s) for s in _SENTENCE_END.split(text) if s.strip())

    def collides(self, text: str) -> bool:
        """True if ``text`` is a pretraining document or one of its sentences."""
        h = text_hash(text)
        return h in self.documents or h in self.sentences


class AnyIndex:
    """Several indexes as one: a text collides if it collides with any of them."""

    def __init__(self, *indexes: PretrainingIndex) -> None:
        self.indexes = indexes

    def collides(self, text: str) -> bool:
        return any(index.collides(text) for index in self.indexes)


def find_collisions(index: PretrainingIndex, texts: Iterable[str]) -> list[int]:
    """Positions of the texts that occur in the pretraining corpus."""
    return [i for i, text in enumerate(texts) if index.collides(text)]
