"""Downloads for the paper's labelling (Gemma 2 9B and Gemma Scope): run once where the network is
(a login node, ``snakemake --until download_reference download_sae``), into the Hugging Face cache
that compute jobs read offline (``HF_HUB_OFFLINE=1``)."""

from __future__ import annotations

import os
from typing import Any


def _online() -> None:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise RuntimeError("downloads need the network: unset HF_HUB_OFFLINE for the download rules")


def download_model(name: str) -> dict[str, Any]:
    """Every file of the hub repository ``name`` (weights, config, tokenizer) into the cache."""
    from huggingface_hub import snapshot_download

    _online()
    return {"name": name, "path": snapshot_download(repo_id=name)}


def download_sae(release: str, sae_id: str) -> dict[str, Any]:
    """An SAE of a sae-lens release into the cache (loading it once downloads its files)."""
    from tokenfilter.label.sae import load_sae

    _online()
    sae = load_sae(release, sae_id)
    return {"release": release, "sae_id": sae_id, "d_in": int(sae.cfg.d_in), "d_sae": int(sae.cfg.d_sae)}
