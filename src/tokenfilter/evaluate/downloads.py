"""Fetch the paper's benchmarks once, each in its dataset's published format, into the local
files ``capabilities.benchmarks.local`` names (the ``download_benchmarks`` rule; run it where the
network is, e.g. ``snakemake download_benchmarks`` on a login node). Compute jobs then read only
the local files (:func:`tokenfilter.evaluate.benchmarks.write_paper_tasks`).

- MMLU: the authors' release archive (``data/test/<subject>_test.csv``, no header: question,
  A, B, C, D, answer letter).
- MedMCQA: the validation split of ``openlifescienceai/medmcqa`` (the copy lm-eval loads), written
  as JSON lines with the published fields ``question, opa, opb, opc, opd, cop`` (cop 0-3).
- MedQA-USMLE, 4 options: the test file of ``GBaker/MedQA-USMLE-4-options``, JSON lines with
  ``question, options {A..D}, answer_idx`` as released.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tokenfilter.io import atomic_path, write_jsonl

MMLU_ARCHIVE = "https://people.eecs.berkeley.edu/~hendrycks/data.tar"
MEDMCQA = ("openlifescienceai/medmcqa", "data/validation-00000-of-00001.parquet")
MEDQA_REPO = "GBaker/MedQA-USMLE-4-options"
MEDMCQA_FIELDS = ("question", "opa", "opb", "opc", "opd", "cop")


@contextlib.contextmanager
def mmlu_archive(timeout: float = 120.0, url: str = MMLU_ARCHIVE) -> Iterator[tarfile.TarFile]:
    """The MMLU release archive, downloaded to a temporary file and opened (removed on exit)."""
    import requests

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "data.tar"
        with requests.get(url, stream=True, timeout=timeout) as response:
            response.raise_for_status()
            with open(archive, "wb") as f:
                shutil.copyfileobj(response.raw, f)
        with tarfile.open(archive) as tar:
            yield tar


def download_mmlu(paths: Mapping[str, str | os.PathLike], timeout: float = 120.0, url: str = MMLU_ARCHIVE) -> None:
    """MMLU test CSVs: {``mmlu_<subject>``: destination} from the release archive (``url``)."""
    with mmlu_archive(timeout, url) as tar:
        for name, dest in paths.items():
            member = tar.extractfile(f"data/test/{name.removeprefix('mmlu_')}_test.csv")
            if member is None:
                raise FileNotFoundError(f"{MMLU_ARCHIVE} has no test file for {name}")
            with atomic_path(dest) as out, open(out, "wb") as f:
                shutil.copyfileobj(member, f)


def download_medmcqa(dest: str | os.PathLike) -> int:
    """MedMCQA's validation split as JSON lines of its published fields."""
    import pandas as pd
    from huggingface_hub import hf_hub_download

    repo, filename = MEDMCQA
    table = pd.read_parquet(hf_hub_download(repo, filename, repo_type="dataset"))
    return write_jsonl(dest, ({k: (int(row[k]) if k == "cop" else str(row[k])) for k in MEDMCQA_FIELDS}
                              for row in table.to_dict("records")))


def download_medqa(dest: str | os.PathLike) -> None:
    """MedQA-USMLE's 4-option test file, as released (JSON lines)."""
    from huggingface_hub import hf_hub_download, list_repo_files

    tests = [f for f in list_repo_files(MEDQA_REPO, repo_type="dataset") if f.endswith("test.jsonl")]
    if len(tests) != 1:
        raise FileNotFoundError(f"{MEDQA_REPO}: expected one *test.jsonl file, found {tests}")
    with atomic_path(dest) as out:
        shutil.copyfile(hf_hub_download(MEDQA_REPO, tests[0], repo_type="dataset"), out)


def download_published(files: Mapping[str, str | os.PathLike]) -> dict[str, Any]:
    """Fetch every published file of ``files`` ({lm-eval task name: destination})."""
    mmlu = {name: path for name, path in files.items() if name.startswith("mmlu_")}
    if mmlu:
        download_mmlu(mmlu)
    if "medmcqa" in files:
        download_medmcqa(files["medmcqa"])
    if "medqa_4options" in files:
        download_medqa(files["medqa_4options"])
    return {name: str(path) for name, path in files.items()}
