"""The paper's post-training sets, read from local copies in their published formats, as the item
files the capability stage reads (``instruct``, ``chat``, ``refusal``, ``free_response`` JSON
lines; the built-in world writes the same files from its own facts).

Sources (paper §3.3, §4.4, App A.3, App B.4) and their published formats:

- **Instruction MCQs** (E7): the Table 3 mix (ARC, BIG-bench, BoolQ, MCTest, OpenBookQA, PIQA,
  RACE), which is MMLU's ``auxiliary_train`` set: CSV files without a header,
  ``question, A, B, C, D, answer letter`` (the MMLU release archive's ``data/auxiliary_train/``),
  or JSON lines / parquet with ``question, choices, answer`` (the Hugging Face copy, answer 0-3).
  Rows with other than four options are skipped and counted (the letter prompt has four).
- **Chat** (E8): smol-smoltalk, records with ``messages: [{role, content}, ...]`` (parquet as on
  the hub, or JSON lines). Conversations must alternate user / assistant after an optional system
  message; others are skipped and counted.
- **Health questions** (E8, E12): HealthSearchQA, records with a ``question`` field (CSV with a
  header, JSON lines or parquet).
- **General instructions** (E8, E12): Alpaca, records ``instruction, input, output`` (the release's
  JSON array, JSON lines or parquet); the prompt is the instruction, then the input after a blank
  line when there is one, and ``output`` is the normal answer refusal training teaches.

Health questions are refused with one of the one-sentence prose refusals the built-in world
uses (the token variant replaces them by ``<|refusal|>``); the free-response set asks every health
question and general instruction (answers judged by the ``http`` judge; ``reference`` carries
Alpaca's output as a reference answer for the judge's correctness question).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tokenfilter.errors import ConfigError
from tokenfilter.io import write_jsonl

LETTERS = "ABCD"
TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def _files(path: str | os.PathLike) -> list[Path]:
    """``path`` itself, or the table files in a directory (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in TABLE_SUFFIXES)
        if not files:
            raise ConfigError(f"{path}: no {'/'.join(TABLE_SUFFIXES)} files in this directory")
        return files
    if not path.is_file():
        raise ConfigError(f"{path}: no such file or directory (capabilities.posttrain.data; `snakemake downloads` "
                          "fetches the paper's sets where the network is)")
    return [path]


def read_records(path: str | os.PathLike, header: bool = True, columns: tuple[str, ...] = ()) -> Iterator[dict]:
    """Records of every table file under ``path`` (JSON lines, a JSON array, CSV, parquet), with
    ``_where`` naming the file and line (row) each came from. CSV without ``header`` takes
    ``columns`` as its field names."""
    for file in _files(path):
        if file.suffix == ".parquet":
            import pyarrow.parquet as pq

            for i, row in enumerate(pq.read_table(file).to_pylist()):
                yield {**row, "_where": f"{file}: row {i}"}
        elif file.suffix == ".csv":
            with open(file, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f) if header else csv.DictReader(f, fieldnames=list(columns))
                for i, row in enumerate(reader, start=2 if header else 1):
                    yield {**row, "_where": f"{file}:{i}"}
        elif file.suffix == ".json":
            data = json.loads(file.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise ConfigError(f"{file}: expected a JSON array of records")
            for i, row in enumerate(data):
                yield {**row, "_where": f"{file}: record {i}"}
        else:
            with open(file, encoding="utf-8") as f:
                for i, line in enumerate(f, start=1):
                    if line.strip():
                        try:
                            yield {**json.loads(line), "_where": f"{file}:{i}"}
                        except json.JSONDecodeError as exc:
                            raise ConfigError(f"{file}:{i}: not a JSON object ({exc.msg})") from exc


def _field(row: Mapping[str, Any], name: str) -> Any:
    if name not in row:
        raise ConfigError(f"{row['_where']}: no field {name!r} (fields: {sorted(k for k in row if k != '_where')})")
    return row[name]


def _limited(rows: Iterator[dict], limit: int | None) -> Iterator[dict]:
    for i, row in enumerate(rows):
        if limit is not None and i >= limit:
            return
        yield row


# --- the four sets ---------------------------------------------------------------------------------

def instruction_items(path: str | os.PathLike, limit: int | None = None) -> tuple[list[dict], int]:
    """(letter-format MCQ items, rows skipped for not having four options)."""
    from tokenfilter.data.synthetic.derived import letter_prompt

    items, skipped = [], 0
    for row in _limited(read_records(path, header=False, columns=("question", "A", "B", "C", "D", "answer")), limit):
        if isinstance(row.get("train"), dict):  # cais/mmlu's auxiliary_train nests each record under "train"
            row = {**row["train"], "_where": row["_where"]}
        if "choices" in row:  # the hub copy: question, choices, answer index
            choices, answer = list(_field(row, "choices")), _field(row, "answer")
            answer = LETTERS.index(answer.strip()) if isinstance(answer, str) and answer.strip() in LETTERS else int(answer)
        else:  # the release CSV: question, A, B, C, D, answer letter
            choices = [str(_field(row, letter) or "").strip() for letter in LETTERS]
            letter = str(_field(row, "answer")).strip()
            if letter not in LETTERS:
                raise ConfigError(f"{row['_where']}: answer {letter!r} is not one of A-D")
            answer = LETTERS.index(letter)
        if len(choices) != 4 or not all(str(c).strip() for c in choices) or not 0 <= answer < 4:
            skipped += 1
            continue
        question = str(_field(row, "question")).strip()
        items.append({"id": f"instruct-{len(items)}", "domain": "unknown", "question": question,
                      "choices": [str(c) for c in choices], "answer": answer,
                      "prompt": letter_prompt(question, [str(c) for c in choices]), "completion": f" {LETTERS[answer]}"})
    return items, skipped


def chat_items(path: str | os.PathLike, limit: int | None = None) -> tuple[list[dict], int]:
    """(chat items, conversations skipped for not alternating user / assistant)."""
    items, skipped = [], 0
    for row in _limited(read_records(path), limit):
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in _field(row, "messages")]
        turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
        roles = [m["role"] for m in turns]
        if not turns or roles != ["user", "assistant"] * (len(turns) // 2) or len(turns) % 2:
            skipped += 1
            continue
        items.append({"id": f"chat-{len(items)}", "domain": "unknown", "messages": messages})
    return items, skipped


def health_questions(path: str | os.PathLike, limit: int | None = None) -> list[str]:
    return [str(_field(row, "question")).strip() for row in _limited(read_records(path), limit)
            if str(row.get("question") or "").strip()]


def general_instructions(path: str | os.PathLike, limit: int | None = None) -> list[tuple[str, str]]:
    """(prompt, answer) of Alpaca-style records."""
    out = []
    for row in _limited(read_records(path), limit):
        instruction, extra = str(_field(row, "instruction")).strip(), str(row.get("input") or "").strip()
        out.append((f"{instruction}\n\n{extra}" if extra else instruction, str(_field(row, "output")).strip()))
    return out


def write_posttrain_sets(data: Mapping[str, Mapping[str, Any]], out: Mapping[str, str | os.PathLike]) -> dict:
    """Read the four sources of ``data`` (``capabilities.posttrain.data``) and write the item files
    ``out`` names (instruct, chat, refusal, free_response); returns counts."""
    from tokenfilter.data.synthetic.templates import REFUSALS

    instruct, instruct_skipped = instruction_items(data["instruct"]["path"], data["instruct"].get("limit"))
    chat, chat_skipped = chat_items(data["chat"]["path"], data["chat"].get("limit"))
    health = health_questions(data["health_questions"]["path"], data["health_questions"].get("limit"))
    general = general_instructions(data["general_instructions"]["path"], data["general_instructions"].get("limit"))
    if not (instruct and chat and health and general):
        empty = [k for k, v in (("instruct", instruct), ("chat", chat), ("health_questions", health),
                                ("general_instructions", general)) if not v]
        raise ConfigError(f"capabilities.posttrain.data: no usable records in {empty}")
    refusal = ([{"id": f"refusal-health-{i}", "domain": "forget", "refuse": True, "prompt": q,
                 "response": REFUSALS[i % len(REFUSALS)]} for i, q in enumerate(health)]
               + [{"id": f"refusal-general-{i}", "domain": "unknown", "refuse": False, "prompt": p, "response": a}
                  for i, (p, a) in enumerate(general)])
    free_response = ([{"id": f"fr-health-{i}", "kind": "health", "domain": "forget", "question": q}
                      for i, q in enumerate(health)]
                     + [{"id": f"fr-general-{i}", "kind": "general", "domain": "unknown", "question": p, "reference": a}
                        for i, (p, a) in enumerate(general)])
    for name, rows in (("instruct", instruct), ("chat", chat), ("refusal", refusal), ("free_response", free_response)):
        write_jsonl(out[name], rows)
    return {"instruct": len(instruct), "instruct_skipped": instruct_skipped, "chat": len(chat),
            "chat_skipped": chat_skipped, "health_questions": len(health), "general_instructions": len(general)}


# --- downloads (the `downloads` target, where the network is) -----------------------------------------

def download_posttrain_set(download: Mapping[str, Any], dest: str | os.PathLike, timeout: float = 300.0,
                           endpoint: str | None = None, archive_url: str | None = None) -> list[str]:
    """Fetch one post-training set into ``dest`` in its published format; returns the files written.

    ``download``: ``{source: mmlu_archive}`` (the MMLU release archive's ``data/auxiliary_train/``
    CSVs: the Table 3 mix) or ``{source: huggingface, repo, pattern}`` (the dataset repository's
    files matching the glob ``pattern``, e.g. ``data/train-*.parquet``). A ``dest`` with a table
    suffix receives the single matching file; otherwise it is a directory of them. ``endpoint``
    (the hub) and ``archive_url`` (MMLU's) default to the real ones; tests point them at stand-ins.
    """
    import fnmatch
    import shutil

    from tokenfilter.io import atomic_path

    dest = Path(dest)
    if download["source"] == "mmlu_archive":
        from tokenfilter.evaluate.downloads import MMLU_ARCHIVE, mmlu_archive

        written = []
        with mmlu_archive(timeout, archive_url or MMLU_ARCHIVE) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("data/auxiliary_train/")
                       and m.name.endswith(".csv")]
            dest.mkdir(parents=True, exist_ok=True)
            for member in members:
                target = dest / Path(member.name).name
                with atomic_path(target) as out, open(out, "wb") as f:
                    shutil.copyfileobj(tar.extractfile(member), f)
                written.append(str(target))
        if not written:
            raise FileNotFoundError(f"{MMLU_ARCHIVE} has no data/auxiliary_train/*.csv")
        return written
    from huggingface_hub import HfApi, hf_hub_download

    repo, pattern = download["repo"], download["pattern"]
    names = sorted(f for f in HfApi(endpoint=endpoint).list_repo_files(repo, repo_type="dataset")
                   if fnmatch.fnmatch(f, pattern))
    if not names:
        raise FileNotFoundError(f"dataset {repo}: no file matches {pattern!r}")
    single = dest.suffix in TABLE_SUFFIXES
    if single and len(names) != 1:
        raise ConfigError(f"capabilities.posttrain.data: {dest} names one file, but {pattern!r} matches {len(names)} "
                          f"files of {repo}; give a directory")
    written = []
    for name in names:
        target = dest if single else dest / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as out:
            shutil.copyfile(hf_hub_download(repo, name, repo_type="dataset", endpoint=endpoint), out)
        written.append(str(target))
    return written
