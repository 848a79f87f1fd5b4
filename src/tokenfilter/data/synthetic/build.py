"""Generate the whole built-in world from a seed: pretraining corpus and every held-out set."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from tokenfilter import DOMAINS
from tokenfilter.data.corpus import CorpusWriter, assign_split, make_record, write_corpus
from tokenfilter.io import write_json, write_jsonl
from tokenfilter.data.synthetic import derived
from tokenfilter.data.synthetic.documents import (SUBDOMAINS, DocumentParams, DocumentWriter, ambiguous_spans,
                                                  forget_fraction, iter_documents)
from tokenfilter.data.synthetic.world import World, build_world

EVAL_DOMAINS = DOMAINS


@dataclasses.dataclass
class SyntheticParams:
    """The built-in world's settings (config ``data.synthetic``; defaults in the config schema)."""

    n_docs: int
    n_eval_docs: int  # per eval domain
    n_attack_docs: int  # the attacker's forget-domain corpus
    mcq_per_domain: int | None  # None: one MCQ per eval-half fact
    world_scale: float
    pathogen_fraction: float
    mixed_only_fraction: float
    far_mixed_only_fraction: float
    zipf_exponent: float
    documents: DocumentParams

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None = None) -> "SyntheticParams":
        """From a ``data.synthetic`` config section; keys it leaves out take the schema's defaults."""
        from tokenfilter.config import section_defaults

        cfg = section_defaults("data.synthetic", cfg or {})
        doc_cfg = dict(cfg.pop("documents"))
        doc_cfg["mixed_forget_share"] = tuple(doc_cfg["mixed_forget_share"])
        return cls(**cfg, documents=DocumentParams(**doc_cfg))


def world_of(params: SyntheticParams, seed: int) -> "World":
    """The knowledge base of a world with these settings (deterministic in ``seed``)."""
    return build_world(seed, params.world_scale, params.pathogen_fraction, params.mixed_only_fraction,
                       params.far_mixed_only_fraction, params.zipf_exponent)


def generate_synthetic(
    params: SyntheticParams,
    seed: int,
    val_fraction: float,
    out: dict[str, str | os.PathLike],
) -> dict[str, Any]:
    """Write the corpus and all derived sets; returns a summary (also written to ``out['summary']``).

    ``out`` maps names to paths (:func:`output_names`). How much of the held-out text occurs in
    the training split is measured afterwards, for every corpus source alike
    (:mod:`tokenfilter.data.overlap`, the ``check_heldout_overlap`` rule).
    """
    world = world_of(params, seed)
    label_threshold = params.documents.doc_label_min_forget

    # Pretraining documents, streamed to parquet; hashes of whole documents and sentences are kept
    # for the exact-collision check of questions and prompts.
    index = derived.PretrainingIndex()
    kinds: dict[str, int] = {}
    with CorpusWriter(out["corpus"]) as writer:
        for doc_id, (text, spans, domain, kind, subdomain) in enumerate(
                iter_documents(world, params.documents, params.n_docs, seed)):
            split = assign_split(doc_id, val_fraction, seed)
            index.add(text)
            kinds[kind] = kinds.get(kind, 0) + 1
            writer.write(make_record(
                doc_id, text, source_id=f"synthetic:{doc_id}", domain=domain, split=split, kind=kind,
                forget_spans=spans, doc_label=forget_fraction(text, spans) >= label_threshold,
                subdomain=subdomain, ambiguous=ambiguous_spans(text),
            ))

    # Held-out eval text per domain (the PubMed / bioRxiv / arXiv analogues): each fact in a frame
    # pretraining never states it in, and no sentence pretraining contains (documents.fact_frames);
    # the forget set alternates between its two sub-domains.
    eval_writer = DocumentWriter(world, params.documents, np.random.default_rng([seed, 4]), "eval", avoid=index)
    eval_index = derived.PretrainingIndex()  # the attacker's text must not repeat eval text either
    for domain in EVAL_DOMAINS:
        docs = []
        for i in range(params.n_eval_docs):
            subdomain = SUBDOMAINS[i % len(SUBDOMAINS)] if domain == "forget" else None
            docs.append((*eval_writer.held_out_document(domain, subdomain), subdomain))
            eval_index.add(docs[-1][0])
        write_corpus(out[f"eval_{domain}"], (
            make_record(i, text, source_id=f"synthetic-eval-{domain}:{i}", domain=domain, split="eval",
                        kind=f"eval_{domain}", forget_spans=spans, subdomain=subdomain,
                        doc_label=forget_fraction(text, spans) >= label_threshold, ambiguous=ambiguous_spans(text))
            for i, (text, spans, subdomain) in enumerate(docs)
        ))

    # The attacker's corpus: forget-domain text with each fact in a third frame, disjoint from
    # pretraining and from every eval set (paper E9 finetunes on PubMed text no model saw).
    attack_writer = DocumentWriter(world, params.documents, np.random.default_rng([seed, 6]), "attack",
                                   avoid=derived.AnyIndex(index, eval_index))
    attack = [(*attack_writer.held_out_document("forget", SUBDOMAINS[i % len(SUBDOMAINS)]), SUBDOMAINS[i % len(SUBDOMAINS)])
              for i in range(params.n_attack_docs)]
    write_corpus(out["attack"], (
        make_record(i, text, source_id=f"synthetic-attack:{i}", domain="forget", split="attack", kind="attack",
                    forget_spans=spans, subdomain=subdomain, doc_label=forget_fraction(text, spans) >= label_threshold,
                    ambiguous=ambiguous_spans(text))
        for i, (text, spans, subdomain) in enumerate(attack)
    ))

    halves = derived.split_facts(world, seed)
    rng = np.random.default_rng([seed, 5])
    collisions: dict[str, int] = {}

    def held_out(name: str, items: list[dict], fields: tuple[str, ...]) -> list[dict]:
        bad = {i for field in fields for i in derived.find_collisions(index, [item[field] for item in items])}
        collisions[name] = len(bad)
        return [item for i, item in enumerate(items) if i not in bad]

    counts: dict[str, int] = {}
    for domain in EVAL_DOMAINS:
        items = derived.mcq_items(world, halves[domain]["eval"], domain, rng, params.mcq_per_domain)
        items = held_out(f"mcq_{domain}", items, ("prompt", "question"))
        counts[f"mcq_{domain}"] = write_jsonl(out[f"mcq_{domain}"], items)

    retain_eval = halves["retain_near"]["eval"] + halves["retain_far"]["eval"]
    retain_train = halves["retain_near"]["train"] + halves["retain_far"]["train"]
    free = derived.free_response_items(world, halves["forget"]["eval"], "health") + derived.free_response_items(world, retain_eval, "general")
    counts["free_response"] = write_jsonl(out["free_response"], held_out("free_response", free, ("question",)))
    instruct = derived.instruction_items(world, retain_train, rng)
    counts["instruct"] = write_jsonl(out["instruct"], held_out("instruct", instruct, ("prompt",)))
    chat = derived.chat_items(world, retain_train, rng)
    counts["chat"] = write_jsonl(out["chat"], held_out("chat", chat, ()))
    refusal = derived.refusal_items(world, halves["forget"]["train"], retain_train, rng)
    counts["refusal"] = write_jsonl(out["refusal"], held_out("refusal", refusal, ("prompt",)))

    summary = {
        "seed": seed,
        "n_docs": params.n_docs,
        "kinds": kinds,
        "n_facts": {d: int(len(world.by_domain[d])) for d in EVAL_DOMAINS},
        "n_facts_by_subdomain": {s: int(len(world.facts_of_subdomain(s))) for s in SUBDOMAINS},
        "n_mixed_only_facts": {d: int(len(world.facts_of(d, True))) for d in EVAL_DOMAINS},
        "n_entities": {k: len(v) for k, v in world.entities.items()},
        "derived_counts": counts,
        "eval_docs_per_domain": params.n_eval_docs,
        "attack_docs": params.n_attack_docs,
        # Questions and prompts whose exact text occurs in the pretraining corpus (dropped).
        "dropped_for_collision": collisions,
        "params": dataclasses.asdict(params),
    }
    write_json(out["summary"], summary)
    return summary


def output_names() -> list[str]:
    return ["corpus", *(f"eval_{d}" for d in EVAL_DOMAINS), "attack", *(f"mcq_{d}" for d in EVAL_DOMAINS),
            "free_response", "instruct", "chat", "refusal", "summary"]


def default_outputs(directory: str | os.PathLike) -> dict[str, Path]:
    d = Path(directory)
    paths = {"corpus": d / "corpus.parquet", "summary": d / "world.json", "attack": d / "attack.parquet",
             "free_response": d / "free_response.jsonl", "instruct": d / "instruct.jsonl",
             "chat": d / "chat.jsonl", "refusal": d / "refusal.jsonl"}
    for domain in EVAL_DOMAINS:
        paths[f"eval_{domain}"] = d / "eval" / f"{domain}.parquet"
        paths[f"mcq_{domain}"] = d / "mcq" / f"{domain}.jsonl"
    return paths
