"""Scorecard rows of the capability stage (paper E7, E8, E10-E13), every verdict computed from
the stage's tables, including the claims that do not favour token filtering.

The four outcomes are the scorecard's (:mod:`tokenfilter.analysis.scorecard`); what "noise could
decide it" means depends on where the noise is:

- **accuracies and rates of one model** (MCQ accuracy, free-response rates, probe accuracy over
  folds) are compared with the **standard error** of the quantity the claim reads (:func:`decide_se`):
  it holds beyond +2 standard errors, does not hold below -2, and is inconclusive in between;
- **refusal rates and probe F1** come from several training or pretraining seeds, so they are
  decided like every seeded claim (:func:`tokenfilter.analysis.scorecard.decide`): the mean
  difference paired by seed against its range over the seeds, inconclusive under 3 seeds.

A claim about what filtering *removes* is inconclusive when the baseline itself shows nothing to
remove (its forget accuracy or correctness within 2 standard errors of chance or zero): a small
model that knows nothing makes "filtered models are near chance" vacuous. Each row reads the
largest size measured for every arm it compares, and names it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from tokenfilter.analysis.scorecard import (FAILS, HOLDS, INCONCLUSIVE, MIN_SEEDS, NOT_MEASURED, SCORECARD_COLUMNS,
                                            _row, decide)
from tokenfilter.evaluate.capabilities import CHANCE, pooled_accuracy
from tokenfilter.evaluate.report import largest_size

Z = 2.0  # a margin within Z standard errors is one noise could decide
NAMES = {"baseline": "the baseline", "document": "document filtering", "mask": "token masking",
         "remove": "token removal"}
FILTERED = ("document", "mask", "remove")
TOKEN = ("mask", "remove")
PROBE_TOLERANCE = 0.05  # the paper's Fig 8: filtered models' F1 within about 0.05 of the baseline's


def decide_se(margin: float, se: float) -> tuple[str, str]:
    """(verdict, why) of a quantity whose positive sign supports the claim, against its standard error."""
    if not np.isfinite(margin):
        return NOT_MEASURED, "the margin could not be computed"
    if not np.isfinite(se) or se <= 0:
        return INCONCLUSIVE, "no standard error to compare the margin with"
    if margin > Z * se:
        return HOLDS, f"margin {margin:+.4f} exceeds {Z:g} standard errors ({Z * se:.4f})"
    if margin < -Z * se:
        return FAILS, f"margin {margin:+.4f} is below minus {Z:g} standard errors ({Z * se:.4f})"
    return INCONCLUSIVE, f"margin {margin:+.4f} is within {Z:g} standard errors ({Z * se:.4f}): noise could decide it"


def _se_row(claim: str, paper: str, source: str, measured: str, margin: float, se: float,
            verdict_why: tuple[str, str] | None = None) -> dict:
    verdict, why = verdict_why or decide_se(margin, se)
    return _row(claim, paper, source, verdict, measured, margin, Z * se, why,
                f"{Z * se:.3f}" if np.isfinite(se) else "")


def _seed_row(claim: str, paper: str, source: str, measured: str, diffs: np.ndarray) -> dict:
    margin = float(np.mean(diffs)) if len(diffs) else math.nan
    spread = float(np.max(diffs) - np.min(diffs)) if len(diffs) else math.nan
    verdict, why = decide(margin, spread, len(diffs))
    return _row(claim, paper, source, verdict, measured, margin, spread, why,
                f"{spread:.3f}" if np.isfinite(spread) else "")


def _binomial_se(rate: float, n: int) -> float:
    return math.sqrt(rate * (1 - rate) / n) if n else math.nan


# --- multiple choice (E7, Figs 5 and 18) ----------------------------------------------------------

class Accuracy:
    """Accuracy per (format, size, arm, domain), first seed, the domain's sets pooled."""

    def __init__(self, table: pd.DataFrame):
        self.cells: dict[tuple, dict] = {}
        if table.empty:
            return
        table = table[table["replicate"] == 0]
        for key, rows in table.groupby(["format", "size", "arm", "domain"]):
            self.cells[key] = pooled_accuracy(rows.to_dict("records"))

    def get(self, fmt: str, size: str, arm: str, domain: str) -> dict | None:
        return self.cells.get((fmt, size, arm, domain))

    def read_size(self, fmt: str, arms: Sequence[str], order: Sequence[str]) -> str | None:
        """The largest size where every arm has a forget accuracy in ``fmt``."""
        sizes = [size for (f, size, arm, domain) in self.cells if f == fmt and domain == "forget"
                 and all((fmt, size, a, "forget") in self.cells for a in arms)]
        return largest_size(sizes, order)


def _text(cell: dict) -> str:
    return f"{cell['acc']:.3f} ± {cell['acc_stderr']:.3f} (n {cell['n']})"


def _above_chance(cell: dict) -> bool:
    return cell["acc"] - CHANCE > Z * cell["acc_stderr"]


def mcq_claims(table: pd.DataFrame, order: Sequence[str]) -> list[dict]:
    acc = Accuracy(table)
    rows = []
    for fmt, source in (("letter", "Fig 5"), ("cloze", "Fig 18")):
        arms = [a for a in ("baseline", *FILTERED) if any(k[0] == fmt and k[2] == a for k in acc.cells)]
        size = acc.read_size(fmt, arms, order) if "baseline" in arms else None
        where = f"{fmt} format, size {size}"
        for arm in FILTERED:
            claim = f"{NAMES[arm].capitalize()} answers forget-domain MCQs near chance ({where})"
            paper = "filtered models near chance on MedMCQA and MedQA-USMLE (Fig 5); forget around chance in cloze (Fig 18)"
            base, cell = (acc.get(fmt, size, a, "forget") for a in ("baseline", arm))
            if size is None or base is None or cell is None:
                rows.append(_row(claim, paper, source, NOT_MEASURED, f"no {fmt}-format accuracy of the baseline and {arm}"))
                continue
            diff, se = base["acc"] - cell["acc"], math.hypot(base["acc_stderr"], cell["acc_stderr"])
            measured = f"forget accuracy: baseline {_text(base)}, {arm} {_text(cell)}; chance {CHANCE}"
            if not _above_chance(base):
                outcome = (INCONCLUSIVE, "the baseline itself is within 2 standard errors of chance: no forget-domain "
                                         "knowledge to remove at this size and format")
            elif _above_chance(cell):
                outcome = (FAILS, f"{arm} is {(cell['acc'] - CHANCE) / cell['acc_stderr']:.1f} standard errors "
                                  "above chance")
            elif diff <= Z * se:
                outcome = (INCONCLUSIVE, f"{arm} is within 2 standard errors of chance, but so close to the baseline "
                                         f"(gap {diff:+.3f}, 2 SE {Z * se:.3f}) that noise could decide it")
            else:
                outcome = (HOLDS, f"{arm} is within 2 standard errors of chance while the baseline is "
                                  f"{(base['acc'] - CHANCE) / base['acc_stderr']:.1f} above it; gap {diff:+.3f}")
            rows.append(_se_row(claim, paper, source, measured, diff, se, outcome))
        rows.append(_retain_claim(acc, fmt, size, source))
        for arm in TOKEN:
            rows.append(_token_vs_document(acc, fmt, size, arm, source))
            rows.append(_retain_near_drop(acc, fmt, size, arm, source))
    return rows


def _retain_claim(acc: Accuracy, fmt: str, size: str | None, source: str) -> dict:
    claim = f"Retain-domain MCQ accuracy holds under every filter ({fmt} format, size {size})"
    paper = "no noticeable retain degradation; token filtering slightly lowers MMLU Bio only (Fig 5)"
    worst = None
    for arm in FILTERED:
        for domain in ("retain_near", "retain_far"):
            base, cell = acc.get(fmt, size, "baseline", domain), acc.get(fmt, size, arm, domain)
            if base is None or cell is None or not _above_chance(base):
                continue
            diff, se = cell["acc"] - base["acc"], math.hypot(base["acc_stderr"], cell["acc_stderr"])
            if worst is None or diff / se < worst[0] / worst[1]:
                worst = (diff, se, arm, domain, base, cell)
    if worst is None:
        verdict = NOT_MEASURED if size is None else INCONCLUSIVE
        return _row(claim, paper, source, verdict, "no retain accuracy of the baseline above chance to compare with",
                    why="the baseline does not know the retain domains at this size and format" if size else "")
    diff, se, arm, domain, base, cell = worst
    measured = f"largest drop: {domain} accuracy baseline {_text(base)}, {arm} {_text(cell)}"
    outcome = (FAILS, f"{arm} loses {-diff:.3f} on {domain}, more than 2 standard errors ({Z * se:.3f})") \
        if diff < -Z * se else (HOLDS, f"no filter loses more than 2 standard errors on a retain set (worst {diff:+.3f}, "
                                       f"2 SE {Z * se:.3f}: smaller drops are not detectable here)")
    return _se_row(claim, paper, source, measured, diff, se, outcome)


def _difference(acc: Accuracy, fmt: str, size: str | None, domain: str, first: str, second: str, claim: str,
                paper: str, source: str, at_chance: str) -> dict:
    """A claim that ``first`` answers ``domain`` MCQs better than ``second`` (margin: the accuracy
    difference); inconclusive when the baseline is at chance there (``at_chance`` says why)."""
    base, a, b = (acc.get(fmt, size, arm, domain) for arm in ("baseline", first, second))
    if base is None or a is None or b is None:
        return _row(claim, paper, source, NOT_MEASURED, f"no {fmt}-format {domain} accuracy of {first} and {second}")
    shown = {"baseline": base, first: a, second: b}
    measured = f"{domain} accuracy at {size}: " + ", ".join(f"{arm} {_text(cell)}" for arm, cell in shown.items())
    outcome = None if _above_chance(base) else (INCONCLUSIVE, at_chance)
    return _se_row(claim, paper, source, measured, a["acc"] - b["acc"], math.hypot(a["acc_stderr"], b["acc_stderr"]),
                   outcome)


def _token_vs_document(acc: Accuracy, fmt: str, size: str | None, arm: str, source: str) -> dict:
    return _difference(acc, fmt, size, "forget", arm, "document",
                       f"{NAMES[arm].capitalize()} leaves more forget-domain MCQ accuracy than document filtering "
                       f"({fmt} format)",
                       "token filtering is weaker than document filtering on MedQA-USMLE and MMLU Medicine (E7)", source,
                       "the baseline itself is within 2 standard errors of chance: both arms have nothing to keep")


def _retain_near_drop(acc: Accuracy, fmt: str, size: str | None, arm: str, source: str) -> dict:
    return _difference(acc, fmt, size, "retain_near", "baseline", arm,
                       f"{NAMES[arm].capitalize()} slightly lowers retain-near (biology) MCQ accuracy ({fmt} format)",
                       "token filtering slightly reduces MMLU Bio, near the classifier's boundary (E7)", source,
                       "the baseline's retain-near accuracy is within 2 standard errors of chance: nothing to lower")


# --- free response (E8, Figs 6 and 17) -------------------------------------------------------------

def _rate(summary: pd.DataFrame, size: str, arm: str, kind: str, criterion: str) -> tuple[float, int] | None:
    rows = summary[(summary["size"] == size) & (summary["arm"] == arm) & (summary["kind"] == kind)
                   & (summary["criterion"] == criterion)]
    return (float(rows["rate"].iloc[0]), int(rows["n"].iloc[0])) if not rows.empty else None


def free_response_claims(summary: pd.DataFrame, order: Sequence[str]) -> list[dict]:
    source = "Fig 6"
    sizes = [s for s in dict.fromkeys(summary["size"]) if "baseline" in set(summary[summary["size"] == s]["arm"])] \
        if not summary.empty else []
    size = largest_size(sizes, order)
    rows = []
    for arm in TOKEN:
        rows.append(_correctness_claim(summary, size, arm, source))
        rows.append(_document_milder_claim(summary, size, arm, source))
        rows.append(_quality_claim(summary, size, arm, source))
    return rows


def _baseline_knows_health(base: tuple[float, int]) -> bool:
    return base[0] > Z * _binomial_se(*base)


def _correctness_claim(summary: pd.DataFrame, size: str | None, arm: str, source: str) -> dict:
    claim = (f"{NAMES[arm].capitalize()} lowers free-response correctness on health questions far more than on "
             f"general instructions (size {size})")
    paper = "10× less correct on HealthSearchQA (text), up to 20× (Fig 6); no major hit on Alpaca (Fig 17)"
    cells = {(a, k): _rate(summary, size, a, k, "correct") if size else None
             for a in ("baseline", arm) for k in ("health", "general")}
    if any(v is None for v in cells.values()):
        return _row(claim, paper, source, NOT_MEASURED, f"no judged answers of the baseline and {arm} on both kinds")
    (bh, nbh), (bg, nbg) = cells[("baseline", "health")], cells[("baseline", "general")]
    (ah, nah), (ag, nag) = cells[(arm, "health")], cells[(arm, "general")]
    margin = (bh - ah) - (bg - ag)
    se = math.sqrt(sum(_binomial_se(p, n) ** 2 for p, n in cells.values()))
    ratio = f"{bh / ah:.3g}×" if ah > 0 else "∞ (no correct answer)"
    measured = (f"correct on health: baseline {bh:.3f} (n {nbh}), {arm} {ah:.3f} (ratio {ratio}); on general: "
                f"baseline {bg:.3f} (n {nbg}), {arm} {ag:.3f}; difference of the two drops {margin:+.3f}")
    outcome = None if _baseline_knows_health(cells[("baseline", "health")]) else (
        INCONCLUSIVE, "the baseline answers almost no health question correctly (within 2 standard errors of 0): "
                      "there is no correctness to lose")
    return _se_row(claim, paper, source, measured, margin, se, outcome)


def _document_milder_claim(summary: pd.DataFrame, size: str | None, arm: str, source: str) -> dict:
    claim = f"Document filtering lowers health-answer correctness less than {NAMES[arm]} (size {size})"
    paper = "document filtering has a milder effect on health answers (Fig 6)"
    base, doc, cell = (_rate(summary, size, a, "health", "correct") if size else None
                       for a in ("baseline", "document", arm))
    if base is None or doc is None or cell is None:
        return _row(claim, paper, source, NOT_MEASURED, f"no judged health answers of the baseline, document and {arm}")
    margin = doc[0] - cell[0]
    se = math.hypot(_binomial_se(*doc), _binomial_se(*cell))
    measured = f"correct on health: baseline {base[0]:.3f}, document {doc[0]:.3f}, {arm} {cell[0]:.3f} (n {cell[1]})"
    outcome = None if _baseline_knows_health(base) else (
        INCONCLUSIVE, "the baseline answers almost no health question correctly: neither arm has correctness to lose")
    return _se_row(claim, paper, source, measured, margin, se, outcome)


def _quality_claim(summary: pd.DataFrame, size: str | None, arm: str, source: str) -> dict:
    claim = f"{NAMES[arm].capitalize()} makes health answers less relevant and less coherent (size {size})"
    paper = "4× less coherent and relevant (text); 3× (Fig 6 caption)"
    drops = []
    for criterion in ("relevant", "coherent"):
        base, cell = (_rate(summary, size, a, "health", criterion) if size else None for a in ("baseline", arm))
        if base is None or cell is None:
            return _row(claim, paper, source, NOT_MEASURED, f"no judged health answers of the baseline and {arm}")
        drops.append((base[0] - cell[0], math.hypot(_binomial_se(*base), _binomial_se(*cell)), criterion, base, cell))
    margin, se, criterion, _, _ = min(drops, key=lambda d: d[0] / d[1] if d[1] > 0 else d[0])
    measured = "; ".join(f"{c} on health: baseline {b[0]:.3f}, {arm} {a[0]:.3f}" for _, _, c, b, a in drops) \
        + f" (the claim reads the weaker drop, {criterion})"
    return _se_row(claim, paper, source, measured, margin, se)


# --- refusal (E12, E13, Figs 9 and 20) -------------------------------------------------------------

def _replicate_rates(summary: pd.DataFrame, variant: str, size: str, arm: str, kind: str) -> np.ndarray | None:
    rows = summary[(summary["variant"] == variant) & (summary["size"] == size) & (summary["arm"] == arm)
                   & (summary["kind"] == kind)]
    if rows.empty:
        return None
    return np.array([float(v) for v in str(rows["replicate_rates"].iloc[0]).split()])


REFUSAL_CLAIMS = [
    # (variant, arm, kind, sign, claim, paper, source): sign +1 means a higher rate of the arm supports it.
    ("prose", "remove", "health", 1, "Token removal refuses held-out health questions more often than the baseline",
     "2× the baseline's rate on HealthSearchQA, no notable rise on Alpaca (Fig 9)", "Fig 9"),
    ("prose", "mask", "health", -1, "Token masking refuses health questions slightly less often than the baseline",
     "masking refuses slightly less than the baseline (Fig 9)", "Fig 9"),
    ("prose", "document", "general", 1, "Document filtering over-refuses general instructions",
     "the document arm refuses Alpaca at a rate only slightly below HealthSearchQA (Fig 9)", "Fig 9"),
    ("token", "remove", "health", 1, "With the refusal token, token removal refuses health questions more often than "
     "the baseline", "removal ≫ baseline on HealthSearchQA; masking ≈ baseline (Fig 20)", "Fig 20"),
]


def refusal_claims(summary: pd.DataFrame, order: Sequence[str]) -> list[dict]:
    rows = []
    for variant, arm, kind, sign, claim, paper, source in REFUSAL_CLAIMS:
        part = summary[summary["variant"] == variant] if not summary.empty else summary
        size = largest_size(list(part["size"]), order) if not part.empty else None
        base = _replicate_rates(part, variant, size, "baseline", kind) if size else None
        cell = _replicate_rates(part, variant, size, arm, kind) if size else None
        claim = f"{claim} ({variant} refusals, size {size})"
        if base is None or cell is None:
            rows.append(_row(claim, paper, source, NOT_MEASURED, f"no {variant} refusal rates of the baseline and {arm}"))
            continue
        n = min(len(base), len(cell))
        diffs = sign * (cell[:n] - base[:n])
        other = "general" if kind == "health" else "health"
        context = {a: _replicate_rates(part, variant, size, a, other) for a in ("baseline", arm)}
        measured = (f"{kind} refusal rate over {n} training seeds: baseline {base.mean():.3f}, {arm} {cell.mean():.3f}"
                    + ("" if any(v is None for v in context.values()) else
                       f"; {other}: baseline {context['baseline'].mean():.3f}, {arm} {context[arm].mean():.3f}"))
        rows.append(_seed_row(claim, paper, source, measured, diffs))
    return rows


# --- probes (E10, E11, Figs 8 and 21) --------------------------------------------------------------

def _probe_read_size(best: pd.DataFrame, arms: Sequence[str], order: Sequence[str]) -> tuple[str, int] | None:
    """(size, seeds): the largest size where every arm has ≥ MIN_SEEDS common seeds, else the largest with any."""
    fallback = None
    for size in reversed(_sizes(best, order)):
        common = None
        for arm in arms:
            seeds = set(best[(best["arm"] == arm) & (best["size"] == size)]["replicate"])
            common = seeds if common is None else common & seeds
        if common:
            if len(common) >= MIN_SEEDS:
                return size, len(common)
            fallback = fallback or (size, len(common))
    return fallback


def _sizes(table: pd.DataFrame, order: Sequence[str]) -> list[str]:
    present = set(table["size"]) if not table.empty else set()
    return [s for s in order if s in present]


def _f1(best: pd.DataFrame, arm: str, size: str) -> pd.Series:
    rows = best[(best["arm"] == arm) & (best["size"] == size)]
    return rows.set_index("replicate")["f1"].astype(float)


def probe_claims(best: pd.DataFrame, order: Sequence[str]) -> list[dict]:
    """``best``: each model's best-layer F1 (:func:`tokenfilter.evaluate.report.best_layers`)."""
    rows = []
    paper = "filtered models' probe F1 only marginally below the baseline's, the gap closing with scale (Fig 8)"
    for arm in FILTERED:
        found = _probe_read_size(best, ["baseline", arm], order) if not best.empty else None
        claim = (f"Probes on {NAMES[arm]} models still separate forget from retain tokens nearly as well as on the "
                 f"baseline (best-layer F1 within {PROBE_TOLERANCE:g}; size {found[0] if found else None})")
        if found is None:
            rows.append(_row(claim, paper, "Fig 8", NOT_MEASURED, f"no probes of the baseline and {arm}"))
            continue
        size, _ = found
        base, cell = _f1(best, "baseline", size), _f1(best, arm, size)
        common = sorted(set(base.index) & set(cell.index))
        diffs = PROBE_TOLERANCE - (base.loc[common] - cell.loc[common]).to_numpy()
        measured = (f"best-layer F1 at {size} over {len(common)} seed(s): baseline {base.loc[common].mean():.3f}, "
                    f"{arm} {cell.loc[common].mean():.3f}; margin = {PROBE_TOLERANCE:g} − gap")
        rows.append(_seed_row(claim, paper, "Fig 8", measured, diffs))
    rows.append(_probe_scale_claim(best, order, paper))
    return rows


def _probe_scale_claim(best: pd.DataFrame, order: Sequence[str], paper: str) -> dict:
    claim = "The probe F1 gap between the baseline and the filtered models closes with scale"
    filtered = [a for a in FILTERED if not best.empty and a in set(best["arm"])]
    sizes = [s for s in _sizes(best, order) if "baseline" in set(best[best["size"] == s]["arm"])
             and all(a in set(best[best["size"] == s]["arm"]) for a in filtered)] if filtered else []
    if len(sizes) < 2:
        return _row(claim, paper, "Fig 8", NOT_MEASURED, "fewer than two sizes with probes of every arm")

    def gaps(size: str) -> pd.Series:
        base = _f1(best, "baseline", size)
        others = pd.concat([_f1(best, a, size) for a in filtered], axis=1).mean(axis=1)
        common = sorted(set(base.index) & set(others.index))
        return base.loc[common] - others.loc[common]

    by_size = {s: gaps(s) for s in sizes}
    margin = float(by_size[sizes[0]].mean() - by_size[sizes[-1]].mean())
    seeded = [s for s in sizes if len(by_size[s]) >= MIN_SEEDS]
    spread = float(by_size[seeded[-1]].max() - by_size[seeded[-1]].min()) if seeded else math.nan
    n = len(by_size[seeded[-1]]) if seeded else max(len(g) for g in by_size.values())
    verdict, why = decide(margin, spread, n)
    if seeded:
        why += f" (the spread is the seed range of the gap at {seeded[-1]})"
    measured = "baseline − mean filtered best-layer F1 by size: " + ", ".join(
        f"{s} {g.mean():+.3f}" for s, g in by_size.items())
    return _row(claim, paper, "Fig 8", verdict, measured, margin, spread, why,
                f"{spread:.3f}" if np.isfinite(spread) else "")


def subdomain_claims(table: pd.DataFrame, order: Sequence[str]) -> list[dict]:
    """``table``: :func:`tokenfilter.evaluate.report.read_subdomain_probes` rows (first seed)."""
    rows = []
    paper = "token-filtered models separate infectious diseases from neurology much worse than the baseline and " \
            "the document arm; all arms ≈ equal against non-medical text (Fig 21)"
    sizes = _sizes(table, order)
    size = sizes[0] if sizes else None  # the paper reads its smallest rung (61M)

    def cell(arm: str, task: str) -> tuple[float, float] | None:
        part = table[(table["size"] == size) & (table["arm"] == arm) & (table["task"] == task)] if size else table
        if part.empty:
            return None
        row = part.iloc[0]
        return float(row["accuracy"]), float(row["accuracy_sd"]) / math.sqrt(int(row["folds"]))

    for arm in TOKEN:
        claim = f"{NAMES[arm].capitalize()} models tell the two forget sub-domains apart worse than the baseline (size {size})"
        base, other = cell("baseline", "infectious_vs_neurological"), cell(arm, "infectious_vs_neurological")
        if base is None or other is None:
            rows.append(_row(claim, paper, "Fig 21", NOT_MEASURED, f"no sub-domain probes of the baseline and {arm}"))
            continue
        measured = (f"infectious vs neurological accuracy (mean over layers): baseline {base[0]:.3f}, {arm} "
                    f"{other[0]:.3f}; standard errors over folds {base[1]:.3f}, {other[1]:.3f}")
        rows.append(_se_row(claim, paper, "Fig 21", measured, base[0] - other[0], math.hypot(base[1], other[1])))
    claim = f"Every arm tells each forget sub-domain from non-medical text about as well as the baseline (size {size})"
    worst = None
    for arm in FILTERED:
        for task in ("infectious_vs_non_medical", "neurological_vs_non_medical"):
            base, other = cell("baseline", task), cell(arm, task)
            if base is None or other is None:
                continue
            diff, se = other[0] - base[0], math.hypot(base[1], other[1])
            if worst is None or (diff / se if se > 0 else diff) < (worst[0] / worst[1] if worst[1] > 0 else worst[0]):
                worst = (diff, se, arm, task, base[0], other[0])
    if worst is None:
        rows.append(_row(claim, paper, "Fig 21", NOT_MEASURED, "no sub-domain vs non-medical probes"))
        return rows
    diff, se, arm, task, base, other = worst
    measured = f"largest drop: {task} accuracy baseline {base:.3f}, {arm} {other:.3f}"
    outcome = (FAILS, f"{arm} loses {-diff:.3f}, more than 2 standard errors ({Z * se:.3f})") if diff < -Z * se else \
        (HOLDS, f"no arm loses more than 2 standard errors (worst {diff:+.3f}, 2 SE {Z * se:.3f})")
    rows.append(_se_row(claim, paper, "Fig 21", measured, diff, se, outcome))
    return rows


def capability_claims(benchmarks: pd.DataFrame, free_response: pd.DataFrame, refusal: pd.DataFrame,
                      probes: pd.DataFrame, subdomains: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Every scorecard row of the stage (columns :data:`SCORECARD_COLUMNS`); empty tables give
    "not measured" rows. ``probes``: best-layer F1 per model; ``order``: the ladder's sizes."""
    rows = mcq_claims(benchmarks, order) + free_response_claims(free_response, order) \
        + refusal_claims(refusal, order) + probe_claims(probes, order) + subdomain_claims(subdomains, order)
    return pd.DataFrame(rows, columns=SCORECARD_COLUMNS)
