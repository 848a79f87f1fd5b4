"""Free-response evaluation (paper E8, §4.2, Fig 6, Fig 17, Table 5).

Chat-tuned models answer health questions (HealthSearchQA; here the built-in world's forget-domain
questions, ``kind`` "health") and general ones (Alpaca; ``kind`` "general"), and a judge says of
each answer whether it is correct, relevant and coherent (App E's three YES/NO questions). This
module judges sampled answers through any :class:`tokenfilter.judge.base.Judge` and aggregates
them per arm:

* a rate per (arm, kind, criterion) with a 95% **Wilson** score interval (exact enough at rates
  near 0 or 1, where the normal interval the authors plotted, √(p(1−p)/n), collapses to a point);
* the **difference** from the baseline arm with Newcombe's hybrid score interval (method 10,
  built from the two Wilson intervals). The paper states ratios ("10× less correct"); a ratio of
  two rates near zero is unstable and undefined at zero, so the table reports differences, and
  the ratio only as a plain number beside them;
* a Table 5-style sample: a few random health questions with every arm's answer.

Answers pooled over several sampling seeds count as separate trials (the interval then
understates the spread between questions somewhat; one seed per question is the paper's design).
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tokenfilter.io import atomic_open, read_jsonl, write_jsonl
from tokenfilter.judge.base import CRITERIA, AnswerItem, Judge

Z95 = 1.959963984540054
BASELINE = "baseline"


# --- intervals ---------------------------------------------------------------------------------

def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate; (0, 1) when there are no trials."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # The interval always holds p; the clamp only absorbs rounding at p = 0 and p = 1.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def difference_interval(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """(p1 − p2, lower, upper): Newcombe's hybrid score interval for a difference of two rates."""
    p1, p2 = k1 / n1 if n1 else float("nan"), k2 / n2 if n2 else float("nan")
    l1, u1 = wilson_interval(k1, n1, z)
    l2, u2 = wilson_interval(k2, n2, z)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def rate_row(successes: int, n: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, n)
    return {"n": n, "yes": successes, "rate": successes / n if n else float("nan"), "ci_low": low, "ci_high": high}


# --- judging -----------------------------------------------------------------------------------

def answer_item(record: Mapping[str, Any]) -> AnswerItem:
    """The judge's question about one generation record (:func:`tokenfilter.evaluate.generation.generate_file`).

    Built-in free-response items carry ``reference`` (a correct sentence), ``answer`` (the
    expected object) and ``fact_id`` (from which the world judge finds the subject).
    """
    return AnswerItem(question=record["question"], answer=record["response"], reference=record.get("reference"),
                      subject=record.get("subject"), expected=record.get("answer"), relation=record.get("relation"),
                      extra={key: record[key] for key in ("fact_id", "id", "kind") if key in record})


def judge_records(judge: Judge, records: Sequence[Mapping[str, Any]], arm: str) -> list[dict[str, Any]]:
    """One judged row per generation: its identity, the answer, and a verdict per criterion."""
    rows = []
    for record in records:
        verdict = judge.answer_quality(answer_item(record))
        rows.append({"arm": arm, "id": record.get("id"), "kind": record.get("kind", "all"),
                     "seed": record.get("seed"), "question": record["question"], "response": record["response"],
                     **{criterion: bool(verdict[criterion]) for criterion in CRITERIA}})
    return rows


def judge_file(generations_path: str | os.PathLike, judge: Judge, arm: str, out_path: str | os.PathLike) -> dict:
    """Judge a generations file of one arm; write the judged rows as JSON lines; return their rates."""
    rows = judge_records(judge, read_jsonl(generations_path), arm)
    write_jsonl(out_path, rows)
    return {"arm": arm, "answers": len(rows),
            **{c: sum(r[c] for r in rows) / len(rows) if rows else None for c in CRITERIA}}


# --- aggregation ----------------------------------------------------------------------------

def summarise(judged: Sequence[Mapping[str, Any]], baseline: str = BASELINE,
              criteria: Sequence[str] = CRITERIA) -> list[dict[str, Any]]:
    """Rows (arm, kind, criterion): the rate with its Wilson interval and, when the baseline arm is
    present, the difference from it with Newcombe's interval (and the plain ratio, for reference)."""
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    arms: list[str] = []
    for row in judged:
        if row["arm"] not in arms:
            arms.append(row["arm"])
        for criterion in criteria:
            cell = counts[(row["arm"], row["kind"], criterion)]
            cell[0] += bool(row[criterion])
            cell[1] += 1
    kinds = sorted({kind for _, kind, _ in counts})
    out = []
    for arm in arms:
        for kind in kinds:
            for criterion in criteria:
                if (arm, kind, criterion) not in counts:
                    continue
                yes, n = counts[(arm, kind, criterion)]
                row: dict[str, Any] = {"arm": arm, "kind": kind, "criterion": criterion, **rate_row(yes, n)}
                if (baseline, kind, criterion) in counts:
                    base_yes, base_n = counts[(baseline, kind, criterion)]
                    d, low, high = difference_interval(yes, n, base_yes, base_n)
                    row.update(diff_vs_baseline=d, diff_ci_low=low, diff_ci_high=high,
                               ratio_vs_baseline=(yes / n) / (base_yes / base_n) if base_yes and n else float("nan"))
                out.append(row)
    return out


def answer_samples(judged: Sequence[Mapping[str, Any]], k: int = 5, seed: int = 0, kind: str = "health",
                   max_chars: int | None = None) -> list[dict[str, Any]]:
    """Table 5: ``k`` random questions of ``kind`` answered by every arm (the first sampling seed's
    answer), one row per question with a column per arm; answers cut to ``max_chars``."""
    by_question: dict[str, dict[str, str]] = defaultdict(dict)
    questions: dict[str, str] = {}
    arms: list[str] = []
    for row in sorted(judged, key=lambda r: -1 if r.get("seed") is None else r["seed"]):
        if row["kind"] != kind:
            continue
        key = str(row.get("id") or row["question"])
        questions[key] = row["question"]
        if row["arm"] not in arms:
            arms.append(row["arm"])
        by_question[key].setdefault(row["arm"], row["response"])
    complete = sorted(key for key, answers in by_question.items() if len(answers) == len(arms))
    rng = np.random.default_rng([seed, 31])
    picked = [complete[i] for i in sorted(rng.choice(len(complete), size=min(k, len(complete)), replace=False))]
    cut = (lambda text: text if max_chars is None or len(text) <= max_chars else text[:max_chars] + "…")
    return [{"id": key, "question": questions[key], **{arm: cut(by_question[key][arm]) for arm in arms}}
            for key in picked]


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as CSV, columns in first-seen order (a row without a column leaves it empty)."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def summarise_files(judged_paths: Mapping[str, str | os.PathLike], summary_csv: str | os.PathLike,
                    samples_csv: str | os.PathLike | None = None, baseline: str = BASELINE, k: int = 5,
                    seed: int = 0) -> list[dict[str, Any]]:
    """Aggregate judged files of several arms ({arm: path}) into the summary table (and Table 5)."""
    judged = []
    for arm, path in judged_paths.items():
        judged += [dict(row, arm=arm) for row in read_jsonl(path)]
    rows = summarise(judged, baseline)
    write_csv(summary_csv, rows)
    if samples_csv is not None:
        write_csv(samples_csv, answer_samples(judged, k, seed))
    return rows
