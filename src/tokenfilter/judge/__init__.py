"""The one judge interface (``base``) and its three judges: ``world`` (the built-in world's
ground truth), ``provenance`` (real corpora with source domains) and ``http`` (an LLM).
:func:`make_judge` builds the one the config's ``judge`` section names."""

from __future__ import annotations

from typing import Any

from tokenfilter.judge.base import (CRITERIA, ActivationContext, AnswerItem, Judge, JudgeError, LatentEvidence,
                                    TextItem)

__all__ = ["CRITERIA", "ActivationContext", "AnswerItem", "Judge", "JudgeError", "LatentEvidence", "TextItem",
           "make_judge"]


def make_judge(config: dict[str, Any]) -> Judge:
    """The judge of a validated workflow config (``judge.kind`` and its settings)."""
    settings = config["judge"]
    kind = settings["kind"]
    if kind == "world":
        from tokenfilter.data.synthetic.build import SyntheticParams, world_of
        from tokenfilter.errors import ConfigError
        from tokenfilter.judge.world import WorldJudge

        if config["data"]["source"] != "synthetic":
            raise ConfigError("config key 'judge.kind': 'world' needs the built-in world (data.source 'synthetic'); "
                              "use 'provenance' or 'http' for real corpora")
        params = SyntheticParams.from_config(config["data"].get("synthetic", {}))
        world = world_of(params, config["seed"])
        return WorldJudge(world, settings["error_rate"], seed=config["seed"],
                          document_threshold=params.documents.doc_label_min_forget)
    if kind == "provenance":
        from tokenfilter.judge.provenance import ProvenanceJudge

        return ProvenanceJudge(settings["majority"])
    from tokenfilter.judge.http import make_http_judge

    return make_http_judge(settings["http"])
