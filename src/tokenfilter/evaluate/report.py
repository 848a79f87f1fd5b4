"""Tables and figures of the capability stage (paper Figs 5, 6, 8, 9, 17, 18, 20, 21; Table 5).

Inputs are the stage's own tables (:mod:`tokenfilter.evaluate.capabilities`): benchmark accuracy
per (model, task set), judged free-response rates, refusal rates, probe results. Every figure
shows its uncertainty: 95% intervals (accuracy ± 1.96 standard errors, Wilson intervals of
rates, the spread of seeds or folds) and the chance level where there is one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tokenfilter.analysis.plots import ARM_COLORS, ARM_LABELS, ARM_MARKERS, _arm_order, _empty_note, _figure, _save
from tokenfilter.evaluate.capabilities import CHANCE
from tokenfilter.io import read_json

Z95 = 1.959963984540054
SET_LABELS = {"forget": "Forget (medical)", "retain_near": "Retain-near (biology)",
              "retain_far": "Retain-far (general)", "medmcqa": "MedMCQA", "medqa": "MedQA-USMLE",
              "mmlu_medicine": "MMLU Medicine", "mmlu_bio": "MMLU Bio", "mmlu_stem": "MMLU STEM",
              "mmlu_non_stem": "MMLU non-STEM"}
FORMAT_TITLES = {"letter": "Letter format after instruction tuning (paper Fig 5)",
                 "cloze": "Cloze format on base models (paper Fig 18)"}
KIND_TITLES = {"health": "Health questions (paper Fig 6)", "general": "General instructions (paper Fig 17)"}
VARIANT_TITLES = {"prose": "Prose refusals (paper Fig 9)", "token": "Refusal token (paper Fig 20)"}
SUBDOMAIN_TASKS = {"infectious_vs_neurological": "infectious vs neurological",
                   "infectious_vs_non_medical": "infectious vs non-medical",
                   "neurological_vs_non_medical": "neurological vs non-medical"}


def _ordered(values: Sequence[str], order: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + [v for v in present if v not in order]


def largest_size(sizes: Sequence[str], order: Sequence[str]) -> str | None:
    """The largest of ``sizes`` in ladder order (``order``), None if there are none."""
    ordered = _ordered(sizes, order)
    return ordered[-1] if ordered else None


# --- multiple choice ------------------------------------------------------------------------

def read_benchmarks(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The benchmark tables of every format, one row per (model, format, task set)."""
    frames = [pd.read_csv(path) for path in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def accuracy_table(table: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Accuracy per format, task set, size and arm, with its standard error, 95% interval and
    the chance level (the per-arm, per-size table of the report)."""
    if table.empty:
        return table
    out = table.copy()
    out["ci_low"] = out["acc"] - Z95 * out["acc_stderr"]
    out["ci_high"] = out["acc"] + Z95 * out["acc_stderr"]
    out["above_chance_se"] = (out["acc"] - out["chance"]) / out["acc_stderr"]
    out["_size"] = out["size"].map({s: i for i, s in enumerate(order)})
    out["_arm"] = out["arm"].map({a: i for i, a in enumerate(_arm_order(out["arm"]))})
    out = out.sort_values(["format", "_size", "set", "_arm"])
    return out[["format", "size", "arm", "replicate", "set", "domain", "acc", "acc_stderr", "ci_low", "ci_high",
                "n", "chance", "above_chance_se"]]


def plot_accuracy(table: pd.DataFrame, fmt: str, path: str | os.PathLike, order: Sequence[str]) -> None:
    """Accuracy per task set (one panel each) against model size, one series per arm, with 95%
    intervals and the chance level (Figs 5 and 18; the paper shows its largest rung only)."""
    rows = table[table["format"] == fmt] if not table.empty else table
    sets = list(dict.fromkeys(rows["set"])) if not rows.empty else ["forget"]
    fig, axes = _figure(1, len(sets), 3.6 * len(sets), 3.6)
    sizes = _ordered(rows["size"], order) if not rows.empty else []
    arms = _arm_order(rows["arm"]) if not rows.empty else []
    for ax, task_set in zip(axes[0], sets):
        part = rows[rows["set"] == task_set] if not rows.empty else rows
        if part.empty:
            _empty_note(ax, "not measured")
        for i, arm in enumerate(arms):
            points = part[part["arm"] == arm].set_index("size").reindex(sizes).dropna(subset=["acc"])
            x = np.array([sizes.index(s) for s in points.index]) + (i - (len(arms) - 1) / 2) * 0.08
            ax.errorbar(x, points["acc"], yerr=Z95 * points["acc_stderr"], marker=ARM_MARKERS.get(arm, "o"),
                        color=ARM_COLORS.get(arm, "0.5"), label=ARM_LABELS.get(arm, arm), capsize=3, lw=1,
                        ls="-" if len(points) > 1 else "none")
        ax.axhline(CHANCE, color="0.4", ls="--", lw=1, label="chance")
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_xlim(-0.5, max(len(sizes), 1) - 0.5)
        ax.set_ylim(0, 1)
        ax.set_xlabel("model size")
        ax.set_ylabel("accuracy")
        ax.set_title(SET_LABELS.get(task_set, task_set), fontsize=10)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{FORMAT_TITLES[fmt]}; bars: 95% intervals", fontsize=11)
    _save(fig, path)


# --- free response --------------------------------------------------------------------------

def plot_free_response(summary: pd.DataFrame, path: str | os.PathLike, order: Sequence[str]) -> None:
    """Figs 6 and 17: the share of answers judged correct, relevant and coherent per arm, on health
    questions and on general instructions, with 95% Wilson intervals (largest post-trained size)."""
    fig, axes = _figure(1, 2, 11.0, 3.8)
    size = largest_size(summary["size"], order) if not summary.empty else None
    rows = summary[summary["size"] == size] if size is not None else summary
    for ax, kind in zip(axes[0], ("health", "general")):
        part = rows[rows["kind"] == kind] if not rows.empty else rows
        if part.empty:
            _empty_note(ax, "not measured")
        else:
            _grouped_bars(ax, part, "criterion", ["correct", "relevant", "coherent"])
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of answers judged YES")
        ax.set_title(f"{KIND_TITLES[kind]}, size {size}", fontsize=10)
    fig.suptitle("Free-response answers of the chat models; bars: 95% Wilson intervals", fontsize=11)
    _save(fig, path)


def _grouped_bars(ax: Any, part: pd.DataFrame, group: str, groups: Sequence[str], dots: str | None = None) -> None:
    """Bars of ``rate`` per ``group`` value (x) and arm (colour) with the rows' CI as error bars;
    ``dots``: a column of space-separated per-replicate rates drawn over each bar."""
    arms = _arm_order(part["arm"])
    width = 0.8 / max(len(arms), 1)
    for i, arm in enumerate(arms):
        rows = part[part["arm"] == arm].set_index(group).reindex(groups)
        x = np.arange(len(groups)) + (i - (len(arms) - 1) / 2) * width
        rate = rows["rate"].to_numpy(dtype=float)
        err = np.vstack([rate - rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float) - rate])
        ax.bar(x, rate, width, yerr=err, capsize=3, color=ARM_COLORS.get(arm, "0.5"), label=ARM_LABELS.get(arm, arm),
               alpha=0.85)
        if dots:
            for xi, values in zip(x, rows[dots]):
                seeds = [float(v) for v in str(values).split()] if isinstance(values, str) else []
                ax.plot([xi] * len(seeds), seeds, "k.", ms=4)
    ax.set_xticks(range(len(groups)), groups)
    ax.legend(fontsize=7)


def free_response_table(summary: pd.DataFrame) -> pd.DataFrame:
    columns = ["size", "arm", "kind", "criterion", "n", "yes", "rate", "ci_low", "ci_high", "diff_vs_baseline",
               "diff_ci_low", "diff_ci_high", "ratio_vs_baseline"]
    return summary[[c for c in columns if c in summary.columns]]


# --- refusal --------------------------------------------------------------------------------

def plot_refusal(summary: pd.DataFrame, path: str | os.PathLike, order: Sequence[str]) -> None:
    """Figs 9 and 20: refusal rates on held-out health questions (higher is better) and general
    instructions (lower is better) per arm, pooled over training seeds with 95% Wilson intervals;
    dots are the seeds (largest post-trained size)."""
    variants = list(dict.fromkeys(summary["variant"])) if not summary.empty else ["prose"]
    fig, axes = _figure(1, len(variants), 5.5 * len(variants), 3.8)
    for ax, variant in zip(axes[0], variants):
        rows = summary[summary["variant"] == variant] if not summary.empty else summary
        size = largest_size(rows["size"], order) if not rows.empty else None
        rows = rows[rows["size"] == size] if size is not None else rows
        if rows.empty:
            _empty_note(ax, "not measured")
        else:
            _grouped_bars(ax, rows, "kind", ["health", "general"], dots="replicate_rates")
        ax.set_ylim(0, 1)
        ax.set_ylabel("refusal rate")
        ax.set_title(f"{VARIANT_TITLES.get(variant, variant)}, size {size}", fontsize=10)
    fig.suptitle("Refusal rates after refusal training (health: higher is better; general: lower)", fontsize=11)
    _save(fig, path)


def refusal_table(summary: pd.DataFrame) -> pd.DataFrame:
    renamed = summary.rename(columns={"yes": "refused"})
    columns = ["variant", "size", "arm", "kind", "n", "refused", "rate", "ci_low", "ci_high", "replicates",
               "replicate_rates", "replicate_mean", "replicate_sd", "diff_vs_baseline", "diff_ci_low", "diff_ci_high"]
    return renamed[[c for c in columns if c in renamed.columns]]


# --- probes ---------------------------------------------------------------------------------

def read_token_probes(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per (model, layer) of the token probes (F1 on held-out documents' tokens)."""
    rows = []
    for path in paths:
        for result in read_json(path):
            for layer in result["rows"]:
                rows.append({"arm": result["arm"], "size": result["size"], "replicate": result["replicate"],
                             "n_tokens": result["n_tokens"], **layer})
    return pd.DataFrame(rows)


def best_layers(probes: pd.DataFrame) -> pd.DataFrame:
    """The best layer's F1 of each model (the paper reads each model at its best layer)."""
    if probes.empty:
        return probes
    best = probes.loc[probes.groupby(["arm", "size", "replicate"])["f1"].idxmax()]
    return best.reset_index(drop=True)


def filter_f1(filter_quality_csv: str | os.PathLike | None, series: str | None) -> float | None:
    """The mean token-level F1 of the main series' token filters against the ground truth (the
    reference line of Fig 8), or None when it is not known."""
    if filter_quality_csv is None or series is None:
        return None
    table = pd.read_csv(filter_quality_csv)
    if table.empty or "f1" not in table.columns:
        return None
    rows = table[(table["series"] == series) & (table["unit"] == "token")]["f1"].dropna()
    return float(rows.mean()) if not rows.empty else None


def plot_token_probes(probes: pd.DataFrame, path: str | os.PathLike, order: Sequence[str],
                      reference_f1: float | None) -> None:
    """Fig 8: F1 of the forget-vs-retain token probe at each model's best layer against size (mean
    over seeds; bars: their range), and F1 per layer at the largest size; the dashed line is the
    pretraining filter's own token F1."""
    fig, axes = _figure(1, 2, 11.0, 3.8)
    left, right = axes[0]
    best = best_layers(probes)
    sizes = _ordered(best["size"], order) if not best.empty else []
    for arm in _arm_order(best["arm"]) if not best.empty else []:
        stats = best[best["arm"] == arm].groupby("size")["f1"].agg(["mean", "min", "max"]).reindex(sizes).dropna()
        x = [sizes.index(s) for s in stats.index]
        left.errorbar(x, stats["mean"], yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
                      marker=ARM_MARKERS.get(arm, "o"), color=ARM_COLORS.get(arm, "0.5"), label=ARM_LABELS.get(arm, arm),
                      capsize=3, lw=1)
    largest = largest_size(sizes, order)
    if largest is not None:
        at = probes[probes["size"] == largest].groupby(["arm", "layer"])["f1"].mean().reset_index()
        for arm in _arm_order(at["arm"]):
            rows = at[at["arm"] == arm]
            right.plot(rows["layer"], rows["f1"], marker=ARM_MARKERS.get(arm, "o"), color=ARM_COLORS.get(arm, "0.5"),
                       label=ARM_LABELS.get(arm, arm))
        right.set_xticks(sorted(at["layer"].unique()))
    for ax in (left, right):
        if best.empty:
            _empty_note(ax, "not measured")
        if reference_f1 is not None:
            ax.axhline(reference_f1, color="tab:red", ls="--", lw=1, label="pretraining filter")
        ax.set_ylabel("probe F1 (held-out documents)")
        ax.legend(fontsize=7)
    left.set_xticks(range(len(sizes)), sizes)
    left.set_xlabel("model size")
    left.set_title("Best layer, by size (paper Fig 8)", fontsize=10)
    right.set_xlabel("layer (output of block)")
    right.set_title(f"Every layer at size {largest}", fontsize=10)
    fig.suptitle("Linear probes for forget vs retain tokens on the pretrained models", fontsize=11)
    _save(fig, path)


def read_subdomain_probes(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per (model, task): accuracy averaged over layers (as Fig 21), its fold spread, and
    the best layer's accuracy."""
    rows = []
    for path in paths:
        for result in read_json(path):
            for task, values in result["tasks"].items():
                layers = values["rows"]
                rows.append({"arm": result["arm"], "size": result["size"], "replicate": result["replicate"],
                             "task": task, "accuracy": values["mean_accuracy"],
                             "accuracy_sd": float(np.mean([r["accuracy_sd"] for r in layers])),
                             "folds": int(layers[0]["folds"]), "documents_per_class": result["documents_per_class"],
                             "best_layer": values["best"]["layer"], "best_accuracy": values["best"]["accuracy"]})
    return pd.DataFrame(rows)


def plot_subdomains(table: pd.DataFrame, path: str | os.PathLike, order: Sequence[str]) -> None:
    """Fig 21: accuracy of the sub-domain probes (mean over layers) per arm, with the spread over
    cross-validation folds; chance is 0.5."""
    fig, axes = _figure(1, 1, 7.0, 3.8)
    ax = axes[0][0]
    size = largest_size(table["size"], order) if not table.empty else None
    rows = table[table["size"] == size] if size is not None else table
    if rows.empty:
        _empty_note(ax, "not measured")
    else:
        tasks = [t for t in SUBDOMAIN_TASKS if t in set(rows["task"])]
        rows = rows.assign(rate=rows["accuracy"], ci_low=rows["accuracy"] - rows["accuracy_sd"],
                           ci_high=rows["accuracy"] + rows["accuracy_sd"])
        _grouped_bars(ax, rows, "task", tasks)
        ax.set_xticks(range(len(tasks)), [SUBDOMAIN_TASKS[t] for t in tasks], fontsize=8)
    ax.axhline(0.5, color="0.4", ls="--", lw=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probe accuracy (mean over layers)")
    ax.set_title(f"Within-forget-domain probes at size {size} (paper Fig 21); bars: SD over folds", fontsize=10)
    _save(fig, path)


# --- the stage's report ---------------------------------------------------------------------------

TABLE_TEXT = {  # output name: (title, note) of each HTML table of the report
    "mcq": ("Multiple-choice accuracy per arm and size (zero-shot, lm-eval)",
            "acc_stderr: lm-eval's standard error; ci: accuracy ± 1.96 standard errors; above_chance_se: (accuracy − "
            "chance) / standard error. Cloze: base models score each option's text; letter: instruction-tuned models "
            "score the letters A-D."),
    "free_response_table": ("Free-response answers judged correct, relevant and coherent",
                            "rate with its 95% Wilson interval; diff_vs_baseline: the difference from the same size's "
                            "baseline with Newcombe's 95% interval (the ratio only for reference: it is unstable "
                            "near 0)."),
    "answers": ("Sample answers to health questions, one column per arm (paper Table 5)",
                "Random held-out health questions with every arm's first sampled answer."),
    "refusal_table": ("Refusal rates on held-out health questions and general instructions",
                      "Pooled over training seeds with a 95% Wilson interval; replicate_rates: each seed's rate; "
                      "diff_vs_baseline with Newcombe's 95% interval."),
    "probes_table": ("Forget-vs-retain token probes, every layer",
                     "F1 (forget = positive) on tokens of held-out documents; layer L is the output of block L."),
}


def write_report(benchmarks: Sequence[str], free_response: Sequence[str], refusal: Sequence[str],
                 probes: Sequence[str], subdomains: Sequence[str], filter_quality: str | None, main_series: str | None,
                 order: Sequence[str], outputs: dict[str, str]) -> pd.DataFrame:
    """Every table and figure of the stage that ``outputs`` names ({output name: path}, the
    ``summarize_capabilities`` rule's), and the claims table (``outputs["claims"]``); returns the claims."""
    from tokenfilter.evaluate.claims import capability_claims
    from tokenfilter.report.tables import write_table

    mcq = read_benchmarks(benchmarks)
    free = pd.read_csv(free_response[0]) if free_response else pd.DataFrame()
    refusals = pd.read_csv(refusal[0]) if refusal else pd.DataFrame()
    token = read_token_probes(probes)
    sub = read_subdomain_probes(subdomains)
    tables = {"mcq": lambda: accuracy_table(mcq, order), "free_response_table": lambda: free_response_table(free),
              "answers": lambda: pd.read_csv(free_response[1]), "refusal_table": lambda: refusal_table(refusals),
              "probes_table": lambda: token}
    figures = {"cloze": lambda path: plot_accuracy(mcq, "cloze", path, order),
               "letter": lambda path: plot_accuracy(mcq, "letter", path, order),
               "free_response": lambda path: plot_free_response(free, path, order),
               "refusal": lambda path: plot_refusal(refusals, path, order),
               "probes": lambda path: plot_token_probes(token, path, order, filter_f1(filter_quality, main_series)),
               "subdomains": lambda path: plot_subdomains(sub, path, order)}
    for name, path in outputs.items():
        if name in tables:
            title, note = TABLE_TEXT[name]
            write_table(tables[name](), html_path=path, title=title, note=note)
        elif name in figures:
            figures[name](path)
    claims = capability_claims(mcq, free, refusals, best_layers(token), sub, order)
    write_table(claims, csv_path=outputs["claims"])
    return claims
