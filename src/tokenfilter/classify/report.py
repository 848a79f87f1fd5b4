"""Tables, figures, example pages and claims of the labelling and classifier stages (paper §5,
Table 1, Figs 10, 11, 24, 25; E1-E3, E16, E19).

Comparisons between classifiers are paired on the same test documents: a difference of F1 is
read with a bootstrap over test documents (each resample draws documents with replacement and
recomputes both F1s at the classifiers' own thresholds), so a verdict says "holds" only when the
difference is larger than what resampling the test set moves it by.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from tokenfilter.analysis.scorecard import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, _row
from tokenfilter.data.shards import TokenShard
from tokenfilter.io import atomic_open, read_json

BOOTSTRAP = 1000


# --- paired bootstrap over documents -----------------------------------------------------------------

def _doc_counts(flags: np.ndarray, labels: np.ndarray, doc_of: np.ndarray, n_docs: int) -> np.ndarray:
    """(n_docs, 3): true positives, flagged and positive tokens per document."""
    return np.stack([np.bincount(doc_of, weights=flags & labels, minlength=n_docs),
                     np.bincount(doc_of, weights=flags, minlength=n_docs),
                     np.bincount(doc_of, weights=labels, minlength=n_docs)], axis=1)


def _f1(counts: np.ndarray) -> np.ndarray:
    tp, flagged, positive = counts[..., 0], counts[..., 1], counts[..., 2]
    return np.where(flagged + positive > 0, 2 * tp / np.maximum(flagged + positive, 1), 0.0)


def paired_f1_difference(shard: TokenShard, scores_a: np.ndarray, threshold_a: float, scores_b: np.ndarray,
                         threshold_b: float, labels: np.ndarray, seed: int = 0, n: int = BOOTSTRAP
                         ) -> tuple[float, float, float]:
    """(F1_a − F1_b, 2.5th and 97.5th percentile of the difference over document resamples) on the
    scored (non-NaN) test tokens of ``shard``."""
    keep = ~np.isnan(scores_a) & ~np.isnan(scores_b)
    positions = np.nonzero(keep)[0]
    doc_of = shard.doc_index_of(positions)
    n_docs = len(shard.docs)
    y = np.asarray(labels)[positions].astype(bool)
    counts_a = _doc_counts(scores_a[positions] >= threshold_a, y, doc_of, n_docs)
    counts_b = _doc_counts(scores_b[positions] >= threshold_b, y, doc_of, n_docs)
    diff = float(_f1(counts_a.sum(0)) - _f1(counts_b.sum(0)))
    rng = np.random.default_rng([seed, 0xB007])
    draws = rng.integers(0, n_docs, size=(n, n_docs))
    weights = np.stack([np.bincount(row, minlength=n_docs) for row in draws]).astype(np.float64)  # (n, n_docs)
    resampled = _f1(weights @ counts_a) - _f1(weights @ counts_b)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return diff, float(low), float(high)


def _verdict_from_interval(diff: float, low: float, high: float) -> tuple[str, str]:
    if low > 0:
        return HOLDS, f"the 95% bootstrap interval [{low:+.3f}, {high:+.3f}] over test documents is above 0"
    if high < 0:
        return FAILS, f"the 95% bootstrap interval [{low:+.3f}, {high:+.3f}] over test documents is below 0"
    return INCONCLUSIVE, f"the 95% bootstrap interval [{low:+.3f}, {high:+.3f}] over test documents contains 0"


# --- the tables ----------------------------------------------------------------------------------------

def label_quality_table(quality_paths: dict[str, str | os.PathLike], selection_path: str | os.PathLike) -> pd.DataFrame:
    """SAE labels against the truth, per part, with the latent selection beside them."""
    selection = read_json(selection_path)
    rows = []
    for part, path in quality_paths.items():
        q = read_json(path)
        rows.append({"part": part, "tokens": q["n_tokens"], "labelled share": q["share_labelled"],
                     "truth share": q.get("truth_share", float("nan")), "precision": q.get("precision", float("nan")),
                     "recall": q.get("recall", float("nan")), "F1": q.get("f1", float("nan")),
                     "latents judged forget": selection["n_judged_forget"], "latents selected": selection["n_selected"],
                     "latents in SAE": selection["d_sae"]})
    return pd.DataFrame(rows)


def classifier_claims(table: pd.DataFrame, shard_dir: str | os.PathLike, scores: dict[str, str | os.PathLike],
                      main_labels: np.ndarray | None, main_labels_name: str, roles: dict[str, str | None],
                      seed: int = 0) -> pd.DataFrame:
    """Scorecard rows of E2, E3 and E16 (``roles`` names the classifier playing each part: main
    (the filter's biLM), encoder, pretrained, context_free, sentence, document; None: not in this run).
    Comparisons are on the test documents against the labels the main classifier learnt from
    (``main_labels``, named ``main_labels_name``: the paper's were SAE labels), and against the
    ground truth where it exists."""
    shard = TokenShard.open(shard_dir)
    truth = None if shard.labels is None else np.asarray(shard.labels, dtype=bool)
    info = table.set_index("classifier")

    def loaded(name: str) -> tuple[np.ndarray, float]:
        return np.load(scores[name]), float(read_json(Path(scores[name]).with_name("metrics.json"))["threshold"])

    def comparison(claim: str, paper: str, source: str, a: str | None, b: str | None, against: str,
                   sign: int = +1) -> dict:
        labels = main_labels if against == main_labels_name else truth
        if a is None or b is None or labels is None:
            return _row(claim, paper, source, NOT_MEASURED, f"not in this run ({'no ' + against if labels is None else 'classifier missing'})")
        for name in (a, b):
            if info.loc[name, "note"]:
                return _row(claim, paper, source, NOT_MEASURED, f"{name} could not be fitted: {info.loc[name, 'note']}")
        (sa, ta), (sb, tb) = loaded(a), loaded(b)
        diff, low, high = paired_f1_difference(shard, sa, ta, sb, tb, labels, seed)
        diff, low, high = sign * diff, *sorted((sign * low, sign * high))
        verdict, why = _verdict_from_interval(diff, low, high)
        column = "f1_test_truth" if against == "ground truth" else "f1_test"
        measured = (f"test F1 against {against}: {a} {info.loc[a, column]:.3f}, {b} {info.loc[b, column]:.3f} "
                    f"(difference {diff:+.3f})")
        return _row(claim, paper, source, verdict, measured, diff, high - low, why, f"{(high - low) / 2:.3f} F1")

    rows = [
        comparison("The biLM probe beats a masked-LM encoder's probe (test token F1)",
                   "biLM 0.880 vs RoBERTa 0.834 test F1 (Table 1)", "Table 1", roles.get("main"), roles.get("encoder"),
                   main_labels_name),
        comparison("Context matters: the biLM probe beats a context-free baseline (each word's forget share)",
                   "beyond the paper: a check that the probe uses context", "Table 1", roles.get("main"),
                   roles.get("context_free"), main_labels_name),
        comparison("Probes trained on sentence labels are worse on token labels than the token-label probe",
                   "coarse-label probes are only slightly worse (Fig 25)", "Fig 25", roles.get("main"),
                   roles.get("sentence"), main_labels_name),
        comparison("Probes trained on document labels are worse on token labels than the token-label probe",
                   "coarse-label probes are only slightly worse (Fig 25)", "Fig 25", roles.get("main"),
                   roles.get("document"), main_labels_name),
    ]
    if roles.get("pretrained"):  # only paper.yaml has one (the built-in world cannot download ModernBERT)
        rows.insert(1, comparison("The biLM probe beats a frozen pretrained encoder's probe (test token F1)",
                                  "biLM 0.880 vs ModernBERT-large 0.812 test F1 (Table 1)", "Table 1", roles.get("main"),
                                  roles.get("pretrained"), main_labels_name))
    if main_labels_name != "ground truth":
        rows.insert(2, comparison("The biLM probe beats a context-free baseline against the ground truth",
                                  "beyond the paper (the paper had no token ground truth)", "Table 1", roles.get("main"),
                                  roles.get("context_free"), "ground truth"))
    rows.append(_document_claim(info, roles.get("main")))
    return pd.DataFrame(rows)


def _document_claim(info: pd.DataFrame, main: str | None) -> dict:
    claim = "The document probe on the biLM's mean-pooled features reaches F1 ≥ 0.9 on test documents"
    paper = "F1 0.922 (val), 0.941 (test) (§5.3)"
    if main is None or main not in info.index or not np.isfinite(info.loc[main, "doc_f1_test"]):
        return _row(claim, paper, "§5.3", NOT_MEASURED, "no document probe in this run")
    f1 = float(info.loc[main, "doc_f1_test"])
    n = int(info.loc[main, "doc_n_test"]) if "doc_n_test" in info.columns else 0
    half = 1.96 * np.sqrt(max(f1 * (1 - f1), 1e-12) / max(n, 1))  # normal approximation, documents as trials
    verdict = HOLDS if f1 - half > 0.9 else FAILS if f1 + half < 0.9 else INCONCLUSIVE
    return _row(claim, paper, "§5.3", verdict, f"test F1 {f1:.3f} on {n} documents (judge labels)", f1 - 0.9, 2 * half,
                f"F1 ± {half:.3f} (95%, normal approximation over documents) against the bar 0.9",
                f"{half:.3f} F1")


# --- example pages (Figs 10 and 11) ---------------------------------------------------------------------

def examples_html(shard_dir: str | os.PathLike, tokenizer, layers: dict[str, np.ndarray], n_docs: int = 3,
                  seed: int = 0, title: str = "") -> str:
    """Random test documents with each token shaded by each labelling (``layers``: name → 0/1 or
    score per shard position): the SAE labels, a classifier's flags, the ground truth."""
    shard = TokenShard.open(shard_dir)
    rng = np.random.default_rng([seed, 0xF10])
    chosen = np.sort(rng.choice(len(shard.docs), size=min(n_docs, len(shard.docs)), replace=False))
    parts = [f"<h3>{html.escape(title)}</h3>",
             "<p class='note'>Each token is shaded where the labelling marks it forget-domain.</p>"]
    for i in chosen:
        start, length = int(shard.docs["start"][i]), int(shard.docs["length"][i]) - 1
        ids = np.asarray(shard.tokens[start:start + length]).astype(np.int64)
        pieces = [tokenizer.decode([int(t)]) for t in ids]
        parts.append(f"<h4>document {int(shard.docs['doc_id'][i])}</h4><table>")
        for name, marks in layers.items():
            m = np.nan_to_num(np.asarray(marks[start:start + length], dtype=np.float64))
            spans = "".join(f"<span style='background: rgba(214, 39, 40, {0.7 * min(max(v, 0.0), 1.0):.2f})'>"
                            f"{html.escape(p)}</span>" for p, v in zip(pieces, m))
            parts.append(f"<tr><th class='text'>{html.escape(name)}</th><td class='text' style='white-space: pre-wrap; "
                         f"max-width: 70em'>{spans}</td></tr>")
        parts.append("</table>")
    from tokenfilter.report.tables import _STYLE

    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{_STYLE}</style></head><body>"
            + "".join(parts) + "</body></html>\n")


def write_examples(path: str | os.PathLike, *args, **kwargs) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(examples_html(*args, **kwargs))


# --- how much text a classifier flags (App C.2, Fig 24) ------------------------------------------------

def flagged_share_per_document(shard: TokenShard, token_scores: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per document: the share of its text tokens scored ≥ ``threshold`` (end-of-text excluded)."""
    flags = np.asarray(token_scores, dtype=np.float32) >= threshold
    starts = shard.docs["start"].astype(np.int64)
    counts = np.add.reduceat(flags.astype(np.int64), starts) if len(starts) else np.zeros(0)
    n_text = np.maximum(shard.docs["length"].astype(np.int64) - 1, 1)
    return counts / n_text


def c2_statistics(shares: dict[str, np.ndarray], doc_flagged: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """App C.2 per labelling: documents with no forget token, with more than 10%, and (with the
    document arm's flags) the forget share inside the documents it flags."""
    rows = []
    for name, share in shares.items():
        row = {"labelling": name, "documents": len(share), "no forget tokens (%)": 100 * float(np.mean(share == 0)),
               ">10% forget tokens (%)": 100 * float(np.mean(share > 0.1))}
        if doc_flagged and name in doc_flagged:
            flagged = doc_flagged[name]
            row["documents flagged by the document score (%)"] = 100 * float(np.mean(flagged))
            row["forget share inside flagged documents (%)"] = (100 * float(np.mean(share[flagged])) if flagged.any()
                                                               else float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def plot_histograms(shares: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Fig 24: histogram of the % of forget tokens per document, one panel per labelling."""
    from tokenfilter.analysis.plots import _figure, _save

    fig, axes = _figure(1, len(shares), 4.0 * len(shares), 3.2)
    for ax, (name, share) in zip(axes[0], shares.items()):
        ax.hist(100 * share, bins=np.linspace(0, 100, 21), color="tab:red", alpha=0.8)
        ax.set_xlabel("% forget tokens in the document")
        ax.set_ylabel("documents")
        ax.set_title(name, fontsize=10)
    fig.suptitle("How much of each document is forget text (paper Fig 24)", fontsize=11)
    _save(fig, path)


def plot_granularity(table: pd.DataFrame, roles: dict[str, str | None], path: str | os.PathLike) -> None:
    """Fig 25: test F1 on token labels of probes trained on token, sentence and document labels."""
    from tokenfilter.analysis.plots import _figure, _save

    fig, axes = _figure(1, 1, 5.0, 3.4)
    ax = axes[0][0]
    levels = [(level, roles.get(role)) for level, role in (("token", "main"), ("sentence", "sentence"),
                                                           ("document", "document"))]
    levels = [(level, name) for level, name in levels if name is not None and name in set(table["classifier"])]
    info = table.set_index("classifier")
    x = np.arange(len(levels))
    for offset, (column, label) in enumerate((("f1_test", "vs the token labels it is compared on"), ("f1_test_truth", "vs ground truth"))):
        ax.bar(x + 0.38 * offset, [info.loc[name, column] for _, name in levels], width=0.36, label=label)
    ax.set_xticks(x + 0.19, [level for level, _ in levels])
    ax.set_xlabel("labels the probe was trained on")
    ax.set_ylabel("test F1 on token labels")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Label granularity (paper Fig 25)", fontsize=10)
    _save(fig, path)


def roles_of(models: dict[str, dict], main: str | None) -> dict[str, str | None]:
    """Which classifier plays each part in the claims: the main biLM (the filter's), a masked-LM
    encoder, a frozen pretrained encoder, the context-free baseline, and biLM probes on sentence / document labels (those of
    the main biLM's size first)."""
    main_size = models.get(main, {}).get("size") if main else None
    main_labels = models.get(main, {}).get("labels") if main else None

    def pick(predicate) -> str | None:
        names = [n for n, m in models.items() if predicate(m)]
        same = [n for n in names if models[n].get("size") == main_size]
        return (same or names or [None])[0]

    return {"main": main,
            "encoder": pick(lambda m: m["features"] == "encoder" and m["labels"] == main_labels),
            "pretrained": pick(lambda m: m["features"] == "pretrained" and m["labels"] == main_labels),
            "context_free": pick(lambda m: m["features"] == "context_free" and m["labels"] == main_labels),
            "sentence": pick(lambda m: m["features"] == "bilm" and m["labels"] == "sentence"),
            "document": pick(lambda m: m["features"] == "bilm" and m["labels"] == "document")}


# --- weak-to-strong (Fig 15, E17) ------------------------------------------------------------------------

def plot_weak_to_strong(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Fig 15: test accuracy of the weak teacher, the strong student on weak labels and the strong
    probe on true labels, against the weak probe's training examples, per level."""
    from tokenfilter.analysis.plots import _figure, _save

    levels = list(dict.fromkeys(table["level"])) or ["token"]
    fig, axes = _figure(1, len(levels), 5.0 * len(levels), 3.8)
    for ax, level in zip(axes[0], levels):
        rows = table[table["level"] == level]
        for column, label, style in (("weak", "weak teacher", "o-"), ("strong_on_weak", "strong on weak labels", "s-"),
                                     ("strong_on_truth", "strong on true labels", "--")):
            ax.plot(rows["amount"], rows[column], style, label=label)
        ax.set_xscale("log")
        ax.set_xlabel(f"weak training {'tokens' if level == 'token' else 'documents'}")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{level} probes", fontsize=10)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Weak-to-strong generalisation (paper Fig 15)", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


NO_GAIN = 0.05  # accuracy: a student "does not beat" its teacher when it gains less than this


def weak_to_strong_claims(table: pd.DataFrame, weak: str | None, strong: str | None) -> pd.DataFrame:
    """E17: the strong student beats its weak teacher for token probes, and not for document
    probes (a gain below :data:`NO_GAIN`). The margin is the student's accuracy gain averaged over
    the amounts (for documents, the bar minus it); its spread is two standard errors of that mean (binomial errors of both accuracies on the test examples, taken as
    independent: conservative, since the two are scored on the same examples)."""
    source, paper = "Fig 15", "token probes generalise weak-to-strong, document probes do not (§6.3, Fig 15)"
    claims = [("token", "Token probes generalise weak-to-strong: a strong probe trained on a weak probe's labels beats the weak probe"),
              ("document", f"Document probes do not generalise weak-to-strong: the strong student gains less than {NO_GAIN} accuracy over its weak teacher")]
    rows = []
    for level, claim in claims:
        part = table[table["level"] == level] if not table.empty else table
        if weak is None or strong is None or part.empty:
            rows.append(_row(claim, paper, source, NOT_MEASURED, "no weak-to-strong run at this level"))
            continue
        gain = (part["strong_on_weak"] - part["weak"]).to_numpy()
        n = part["n_test"].to_numpy().astype(float)
        var = (part["weak"] * (1 - part["weak"]) + part["strong_on_weak"] * (1 - part["strong_on_weak"])).to_numpy() / n
        mean, two_se = float(gain.mean()), float(2 * np.sqrt(var.sum()) / len(gain))
        pgr = part["pgr"].to_numpy()
        measured = (f"{strong} on {weak}'s labels: accuracy gain over the teacher {mean:+.3f} (mean over "
                    f"{len(gain)} amounts, {int(n[0])} test {level}s); PGR {np.nanmean(pgr):+.2f}"
                    if np.isfinite(pgr).any() else
                    f"{strong} on {weak}'s labels: accuracy gain over the teacher {mean:+.3f} (mean over {len(gain)} amounts); "
                    "no gap to recover (the strong ceiling does not beat the teacher)")
        if level == "token":
            verdict = HOLDS if mean > two_se else FAILS if mean < -two_se else INCONCLUSIVE
            why = f"gain {mean:+.3f} against ± {two_se:.3f} (2 SE)"
            rows.append(_row(claim, paper, source, verdict, measured, mean, two_se, why, f"{two_se:.3f} accuracy"))
        else:
            # "No gain" as a measurable claim: the gain is below 0.05 accuracy, by more than its noise.
            margin = NO_GAIN - mean
            verdict = HOLDS if margin > two_se else FAILS if margin < -two_se else INCONCLUSIVE
            why = f"gain {mean:+.3f} against the bar {NO_GAIN} (margin {margin:+.3f}, ± {two_se:.3f} = 2 SE)"
            rows.append(_row(claim, paper, source, verdict, measured, margin, two_se, why, f"{two_se:.3f} accuracy"))
    return pd.DataFrame(rows)


# --- the stage's report, in one call ----------------------------------------------------------------

def write_classifier_report(*, models: dict[str, dict], main: str | None, metrics: dict[str, str],
                            test_scores: dict[str, str], label_quality: dict[str, str], selection: str,
                            test_shard: str, main_test_labels: str | None, tokenizer_path: str,
                            train_shard: str, annotation: str | None, out: dict[str, str], seed: int) -> pd.DataFrame:
    """Table 1, the SAE-label quality table, the example pages (Figs 10, 11), the per-document
    forget-share histograms and App C.2 statistics (Fig 24; the main classifier over the whole
    training corpus against the truth), the granularity figure (Fig 25) and the claims; returns
    the claims."""
    from tokenfilter.classify.pipeline import classifier_table
    from tokenfilter.data.tokenizer import load_tokenizer
    from tokenfilter.report.tables import write_table

    table = classifier_table(metrics, models)
    write_table(table, csv_path=out["table1_csv"], html_path=out["table1"],
                title="Token classifiers (paper Table 1)",
                note="F1 of each token probe on the validation and test documents against the labels it learnt from "
                     "(the paper's: SAE labels) and, beyond the paper, against the ground truth; the threshold is the "
                     "validation F1 maximum; layers swept. Document probes: F1 against the judge's document labels.")
    write_table(label_quality_table(label_quality, selection), html_path=out["label_quality"],
                title="SAE token labels against the ground truth",
                note="Precision, recall and F1 of the SAE rule's labels (in pretraining tokens) per part of the "
                     "classifier's documents, and how many latents the judge and the quality bar kept.")
    shard = TokenShard.open(test_shard)
    tokenizer = load_tokenizer(tokenizer_path)
    layers: dict[str, np.ndarray] = {}
    sae_test = label_quality.get("test")
    if sae_test:
        layers["SAE labels"] = np.load(Path(sae_test).with_name("sae_labels.npy"))
    if main is not None and not read_json(metrics[main]).get("unavailable"):
        threshold = float(read_json(metrics[main])["threshold"])
        layers[f"classifier {main}"] = (np.load(test_scores[main]) >= threshold).astype(np.float32)
    if shard.labels is not None:
        layers["ground truth"] = np.asarray(shard.labels, dtype=np.float32)
    write_examples(out["examples"], test_shard, tokenizer, layers, n_docs=3, seed=seed,
                   title="Three random test documents: SAE labels, the classifier's flags and the truth (paper Figs 10, 11)")

    train = TokenShard.open(train_shard)
    shares: dict[str, np.ndarray] = {}
    doc_flags: dict[str, np.ndarray] = {}
    if annotation is not None:
        from tokenfilter.filtering.annotation import open_scores

        token_scores, doc_scores = open_scores(annotation)
        name = f"classifier {main}" if main else "filter"
        shares[name] = flagged_share_per_document(train, token_scores)
        doc_flags[name] = np.asarray(doc_scores) >= 0.5
    if train.labels is not None:
        shares["ground truth"] = flagged_share_per_document(train, np.asarray(train.labels, dtype=np.float32))
    if shares:
        plot_histograms(shares, out["histogram"])
    else:
        plot_histograms({"(no labelling)": np.zeros(1)}, out["histogram"])
    write_table(c2_statistics(shares, doc_flags), html_path=out["c2"], title="How much text is filtered (paper App C.2)",
                note="Per labelling of the whole training corpus: documents with no forget token, with more than 10%, "
                     "and, for the classifier, the share of documents its document score flags and the forget share "
                     "inside them (paper: 23% no medical token, 37% > 10%, 18% flagged with ~50% medical inside).")
    roles = roles_of(models, main)
    plot_granularity(table, roles, out["granularity"])
    labels = None if main_test_labels is None else np.load(main_test_labels)
    if labels is None and main is not None and models[main]["labels"] == "truth" and shard.labels is not None:
        labels = np.asarray(shard.labels, dtype=bool)
    name = {"sae": "SAE labels", "truth": "ground truth"}.get(models.get(main, {}).get("labels", "sae"),
                                                              "its training labels")
    claims = classifier_claims(table, test_shard, test_scores, labels, name, roles, seed)
    write_table(claims, csv_path=out["claims"])
    return claims
