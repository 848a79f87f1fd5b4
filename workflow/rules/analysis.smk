# Analysis stage (DESIGN §3 analysis.smk): per-series tables, the figures of each series' kind,
# and the claims scorecard (which reads the tables; it does not refit).



rule tabulate_losses:
    input:
        losses=lambda wc: [f"{run.path('evaluate')}/text_loss.json" for run in series_table_runs(wc.series)],
    output:
        table="results/analysis/{series}/losses.csv",
    params:
        series=lambda wc: wc.series,
    log:
        "results/logs/analysis/{series}/tabulate_losses.log",
    benchmark:
        "results/benchmarks/analysis/{series}/tabulate_losses.tsv"
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/tabulate_losses.py"


rule analyze_series:
    input:
        table="results/analysis/{series}/losses.csv",
    output:
        fits=report("results/analysis/{series}/fits.html", caption="../report/fits.rst", category=series_category, labels=series_labels("baseline power-law fits")),
        fits_csv="results/analysis/{series}/fits.csv",
        slowdowns=report("results/analysis/{series}/slowdowns.html", caption="../report/slowdowns_table.rst", category=series_category, labels=series_labels("loss-matched slowdowns (table)")),
        slowdowns_csv="results/analysis/{series}/slowdowns.csv",
        slowdowns_all_forms="results/analysis/{series}/slowdowns_all_forms.csv",
        learning_curves=report("results/analysis/{series}/learning_curves.png", caption="../report/learning_curves.rst", category=series_category, labels=series_labels("learning curves")),
        frontier=report("results/analysis/{series}/frontier.png", caption="../report/frontier.rst", category=series_category, labels=series_labels("forget-retain frontier (Fig 4)")),
    params:
        fit_sizes=config["analysis"]["fit_sizes"],
        fit_form=config["analysis"]["fit"],
    log:
        "results/logs/analysis/{series}/analyze_series.log",
    benchmark:
        "results/benchmarks/analysis/{series}/analyze_series.tsv"
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/analyze_series.py"


# --- figures of one kind of series ------------------------------------------------------------


rule plot_compute_loss:
    input:
        table="results/analysis/{series}/losses.csv",
        fits="results/analysis/{series}/fits.csv",
    output:
        figure=report("results/analysis/{series}/compute_loss.png", caption="../report/compute_loss.rst", category=series_category, labels=series_labels("compute-loss curves (Fig 16)")),
    params:
        fit_form=config["analysis"]["fit"],
    log:
        "results/logs/analysis/{series}/plot_compute_loss.log",
    benchmark:
        "results/benchmarks/analysis/{series}/plot_compute_loss.tsv"
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/plot_compute_loss.py"


rule plot_slowdown:
    input:
        slowdowns="results/analysis/{series}/slowdowns.csv",
    output:
        figure=report("results/analysis/{series}/slowdown.png", caption="../report/slowdown.rst", category=series_category, labels=series_labels("loss-matched slowdown (Figs 1, 19)")),
    log:
        "results/logs/analysis/{series}/plot_slowdown.log",
    benchmark:
        "results/benchmarks/analysis/{series}/plot_slowdown.tsv"
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/plot_slowdown.py"


rule compare_pareto:
    input:
        table="results/analysis/{series}/losses.csv",
    output:
        points="results/analysis/{series}/pareto.csv",
        figure=report("results/analysis/{series}/pareto.png", caption="../report/pareto.rst", category=series_category, labels=series_labels("token vs document Pareto (Fig 3)")),
    log:
        "results/logs/analysis/{series}/compare_pareto.log",
    benchmark:
        "results/benchmarks/analysis/{series}/compare_pareto.tsv"
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/compare_pareto.py"


rule compare_filters:
    input:
        table="results/analysis/{series}/losses.csv",
        main=lambda wc: f"results/analysis/{series_of_kind(config, 'ladder')[0]}/losses.csv",
    output:
        table="results/analysis/{series}/filter_comparison.csv",
        figure=report("results/analysis/{series}/filter_comparison.png", caption="../report/filter_comparison.rst", category=series_category, labels=series_labels("arms with each filter")),
    params:
        main_filter=lambda wc: ", ".join(series_filters(config, series_of_kind(config, "ladder")[0])),
        series_filter=lambda wc: ", ".join(series_filters(config, wc.series)),
    log:
        "results/logs/analysis/{series}/compare_filters.log",
    benchmark:
        "results/benchmarks/analysis/{series}/compare_filters.tsv"
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/compare_filters.py"


rule compare_classifiers:
    input:
        table="results/analysis/{series}/losses.csv",
        main=lambda wc: f"results/analysis/{series_of_kind(config, 'ladder')[0]}/losses.csv",
        table1="results/analysis/classifiers/table1.csv" if config["classifiers"]["models"] else [],
    output:
        csv="results/analysis/{series}/classifier_filters.csv",
        html=report("results/analysis/{series}/classifier_filters.html", caption="../report/classifier_filters.rst", category=series_category, labels=series_labels("classifiers as filters (table)")),
        figure=report("results/analysis/{series}/classifier_filters.png", caption="../report/classifier_filters.rst", category=series_category, labels=series_labels("frontier gain vs AUROC (Fig 28)")),
        claims="results/analysis/{series}/classifier_filters_claims.csv",
    params:
        filters=lambda wc: canonical(series_variant_filters(wc.series)),
    log:
        "results/logs/analysis/{series}/compare_classifiers.log",
    benchmark:
        "results/benchmarks/analysis/{series}/compare_classifiers.tsv"
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/compare_classifiers.py"


rule analyze_sweep:
    input:
        table="results/analysis/{series}/losses.csv",
        slowdowns="results/analysis/{series}/slowdowns.csv",
        main=lambda wc: f"results/analysis/{series_of_kind(config, 'ladder')[0]}/losses.csv",
        summaries=lambda wc: [f"{run.path('pretrain')}/summary.json" for run in series_runs(config, wc.series) if run.arm != "baseline"],
    output:
        csv="results/analysis/{series}/sweep.csv",
        html=report("results/analysis/{series}/sweep.html", caption="../report/sweep.rst", category=series_category, labels=series_labels("sweep (table)")),
        figure=report("results/analysis/{series}/sweep.png", caption="../report/sweep.rst", category=series_category, labels=series_labels("slowdown vs setting (Figs 12, 13, 22)")),
        frontier=report("results/analysis/{series}/sweep_frontier.png", caption="../report/sweep_frontier.rst", category=series_category, labels=series_labels("frontier by setting (Fig 23)")),
        claims="results/analysis/{series}/sweep_claims.csv",
    params:
        kind=lambda wc: series_kind(config, wc.series),
        variants=lambda wc: canonical(config["experiments"][wc.series].get("variants") or {}),
    log:
        "results/logs/analysis/{series}/analyze_sweep.log",
    benchmark:
        "results/benchmarks/analysis/{series}/analyze_sweep.tsv"
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/analyze_sweep.py"


rule analyze_lr_sweep:
    input:
        table="results/analysis/{series}/losses.csv",
        # Run-to-run noise from the main series' seeds, unless the main series trains with this
        # sweep's table (which would make a cycle).
        main=lambda wc: [] if config["training"]["hparams_from"] or not series_of_kind(config, "ladder")
        else f"results/analysis/{series_of_kind(config, 'ladder')[0]}/losses.csv",
    output:
        table="results/analysis/{series}/table2.csv",
        html=report("results/analysis/{series}/table2.html", caption="../report/lr_sweep.rst", category=series_category, labels=series_labels("best hyperparameters (Table 2)")),
        figure=report("results/analysis/{series}/lr_sweep.png", caption="../report/lr_sweep.rst", category=series_category, labels=series_labels("loss vs learning rate (E0)")),
        claims="results/analysis/{series}/lr_sweep_claims.csv",
    params:
        variants=lambda wc: canonical(config["experiments"][wc.series].get("variants") or {}),
        ladder=canonical(config["ladder"]),
        default_mup=config["model"]["mup_base_width"],
    log:
        "results/logs/analysis/{series}/analyze_lr_sweep.log",
    benchmark:
        "results/benchmarks/analysis/{series}/analyze_lr_sweep.tsv"
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/analyze_lr_sweep.py"


rule tabulate_filter_quality:
    input:
        summaries=[f"{run.path('pretrain')}/summary.json" for run in all_runs(config) if run.arm != "baseline"],
    output:
        csv="results/analysis/filter_quality.csv",
        html=report("results/analysis/filter_quality.html", caption="../report/filter_quality.rst", category="0. Claims scorecard", labels={"table": "filter quality of every run"}),
    log:
        "results/logs/analysis/tabulate_filter_quality.log",
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/tabulate_filter_quality.py"


# --- the claims scorecard ------------------------------------------------------------------------


rule scorecard:
    input:
        tables=scorecard_inputs,
        filter_quality="results/analysis/filter_quality.csv",
        stage_claims=stage_claims(),
    output:
        csv="results/analysis/scorecard.csv",
        html=report("results/analysis/scorecard.html", caption="../report/scorecard.rst", category="0. Claims scorecard", labels={"table": "claims scorecard"}),
        findings=report("results/analysis/findings.html", caption="../report/findings.rst", category="0. Claims scorecard", labels={"table": "findings"}),
    params:
        tables=scorecard_tables(),
        fit_form=config["analysis"]["fit"],
        main_filter=", ".join(series_filters(config, series_of_kind(config, "ladder")[0])) if series_of_kind(config, "ladder") else None,
        filter_names={s: ", ".join(series_filters(config, s)) for s in series_of_kind(config, "filter")},
        filter_specs=canonical(config["filters"]),
    log:
        "results/logs/analysis/scorecard.log",
    benchmark:
        "results/benchmarks/analysis/scorecard.tsv"
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/scorecard.py"


# --- where the time went ----------------------------------------------------------------------


rule summarize_timings:
    input:
        benchmarks=benchmark_files(),
    output:
        csv="results/analysis/timings.csv",
        html=report("results/analysis/timings.html", caption="../report/timings.rst", category="3. Run time", labels={"table": "wall and CPU time per stage and rung"}),
    log:
        "results/logs/analysis/summarize_timings.log",
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/summarize_timings.py"
