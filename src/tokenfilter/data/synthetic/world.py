"""The knowledge base of the built-in world: entities and facts in three domains.

Facts link the domains on purpose, as real medicine links to biology: diseases are caused by
biology's species and drugs block biology's proteins, so forget text is partly predictable from
retain knowledge. Facts about pathogenic species, and a further share of biology facts, are
*mixed-only*: in pretraining they appear only inside documents that also contain medicine, so
document filtering costs biology knowledge while token filtering need not (paper Fig 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tokenfilter.data.synthetic.names import ENDINGS, NameMaker
from tokenfilter.data.synthetic.templates import ENTITY_ALIASES, ENTITY_TYPES, FIXED_TYPES, RELATIONS, Relation


@dataclass(frozen=True)
class Fact:
    fact_id: int
    relation: str
    domain: str
    subject: str
    object: str
    mixed_only: bool  # appears in pretraining only inside documents that also hold medicine
    subdomain: str | None = None  # forget facts: "infectious" | "neurological"


@dataclass
class World:
    entities: dict[str, list[str]]
    relations: dict[str, Relation]
    facts: list[Fact]
    pathogens: list[str]
    popularity: np.ndarray  # sampling weight of each fact within its domain (Zipf-like)
    by_domain: dict[str, np.ndarray] = field(default_factory=dict)  # fact indices per domain
    aliases: dict[str, list[str]] = field(default_factory=dict)  # slot -> union of several types

    def pool(self, slot: str) -> list[str]:
        """The names a template slot draws from: an entity type, or an alias of several."""
        if slot in self.entities:
            return self.entities[slot]
        if slot in self.aliases:
            return self.aliases[slot]
        raise KeyError(slot)

    def facts_of_subdomain(self, subdomain: str) -> np.ndarray:
        return np.array([i for i in self.by_domain["forget"] if self.facts[i].subdomain == subdomain], dtype=np.int64)

    def facts_of(self, domain: str, mixed_only: bool | None = None) -> np.ndarray:
        idx = self.by_domain[domain]
        if mixed_only is None:
            return idx
        flags = np.array([self.facts[i].mixed_only for i in idx], dtype=bool)
        return idx[flags == mixed_only]


def _names(maker: NameMaker, rng: np.random.Generator, spec: dict, n: int) -> list[str]:
    style = spec["style"]
    domain = spec["domain"]
    if style == "lower":
        return maker.words(domain, n, syllables=spec["syllables"])
    if style == "capital":
        return maker.words(domain, n, capitalise=True, syllables=spec["syllables"])
    if style == "suffix":
        stems = maker.words(domain, n, syllables=(1, 2))
        return [f"{stem} {spec['suffixes'][rng.integers(len(spec['suffixes']))]}" for stem in stems]
    if style == "person":
        first = maker.words(domain, n, capitalise=True, syllables=(1, 2))
        last = maker.words(domain, n, capitalise=True, syllables=(2, 2))
        return [f"{a} {b}" for a, b in zip(first, last)]
    if style == "event":
        return [f"{w} Festival" for w in maker.words(domain, n, capitalise=True, syllables=(1, 2))]
    raise ValueError(f"unknown name style {style!r}")


def _stem(name: str) -> str:
    """A name without its ending: the morpheme a derived medical name reuses."""
    for ending in sorted(ENDINGS, key=len, reverse=True):
        if name.endswith(ending) and len(name) - len(ending) >= 3:
            return name[: -len(ending)]
    return name


def _derived_names(maker: NameMaker, rng: np.random.Generator, spec: dict, n: int,
                   entities: dict[str, list[str]]) -> list[str]:
    """Medical names built on retain names: "<species stem>itis", "<Place> fever", "<protein stem>inib".

    The stem comes from a random retain entity, not from a related one, so a name never gives
    away a fact (a disease is not named after its own pathogen).
    """
    pool = [name for source in spec["from"] for name in entities[source]]
    names: list[str] = []
    while len(names) < n:
        base = pool[int(rng.integers(len(pool)))]
        ending = spec["endings"][int(rng.integers(len(spec["endings"])))]
        name = f"{base.lower()}{ending}" if ending.startswith(" ") else f"{_stem(base.lower())}{ending}"
        if name not in maker.used:
            maker.used.add(name)
            names.append(name)
    return names


def build_world(
    seed: int,
    scale: float,
    pathogen_fraction: float,
    mixed_only_fraction: float,
    far_mixed_only_fraction: float,
    zipf_exponent: float,
) -> World:
    """Build the knowledge base deterministically from ``seed``.

    Args:
        scale: multiplies every entity count (the number of facts grows with it).
        pathogen_fraction: share of species that cause a disease; all their biology facts are
            mixed-only.
        mixed_only_fraction: further share of the other biology facts that are mixed-only.
        far_mixed_only_fraction: share of general facts that are mixed-only.
        zipf_exponent: facts are mentioned with weight 1/rank^exponent (a long tail).
    """
    rng = np.random.default_rng([seed, 1])
    maker = NameMaker(rng)
    entities: dict[str, list[str]] = {}
    for type_name, spec in ENTITY_TYPES.items():  # retain types first: medical names build on them
        n = max(4, int(round(spec["count"] * scale)))
        if spec["style"] == "derived":
            entities[type_name] = _derived_names(maker, rng, spec, n, entities)
        else:
            entities[type_name] = _names(maker, rng, spec, n)
    for type_name, members in FIXED_TYPES.items():
        entities[type_name] = list(members)

    species = entities["species"]
    # At least 4 pathogens, so a "which organism causes X?" question always has 3 wrong answers.
    n_pathogens = min(len(species), max(4, int(round(pathogen_fraction * len(species)))))
    pathogens = [species[i] for i in sorted(rng.choice(len(species), n_pathogens, replace=False))]
    pathogen_set = set(pathogens)
    aliases = {alias: [name for kind in kinds for name in entities[kind]] for alias, kinds in ENTITY_ALIASES.items()}
    aliases["pathogen"] = pathogens

    facts: list[Fact] = []
    for relation in RELATIONS:
        objects = aliases[relation.object] if relation.object in aliases else entities[relation.object]
        for subject in entities[relation.subject]:
            choices = [o for o in objects if o != subject]
            obj = choices[rng.integers(len(choices))]
            if relation.domain == "retain_near":
                mixed = subject in pathogen_set or rng.random() < mixed_only_fraction
            elif relation.domain == "retain_far":
                mixed = rng.random() < far_mixed_only_fraction
            else:
                mixed = False
            facts.append(Fact(len(facts), relation.name, relation.domain, subject, obj, bool(mixed),
                              relation.subdomain))

    popularity = np.zeros(len(facts))
    by_domain: dict[str, np.ndarray] = {}
    for domain in ("forget", "retain_near", "retain_far"):
        idx = np.array([f.fact_id for f in facts if f.domain == domain], dtype=np.int64)
        ranks = rng.permutation(len(idx)) + 1
        popularity[idx] = 1.0 / ranks**zipf_exponent
        by_domain[domain] = idx
    return World(
        entities=entities,
        relations={r.name: r for r in RELATIONS},
        facts=facts,
        pathogens=pathogens,
        popularity=popularity,
        by_domain=by_domain,
        aliases=aliases,
    )
