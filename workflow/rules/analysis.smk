# Analysis stage (DESIGN §3 analysis.smk): per-series tables and figures, and the claims scorecard.

ANALYSIS_RESOURCES = resources_of("default")


rule tabulate_losses:
    input:
        losses=lambda wc: [f"{run.path('evaluate')}/text_loss.json" for run in series_table_runs(wc.series)],
    output:
        table="results/analysis/{series}/losses.csv",
    params:
        series=lambda wc: wc.series,
    log:
        "results/logs/analysis/{series}/tabulate_losses.log",
    resources:
        mem_mb=ANALYSIS_RESOURCES["mem_mb"],
        runtime=ANALYSIS_RESOURCES["runtime"],
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
        compute_loss=report("results/analysis/{series}/compute_loss.png", caption="../report/compute_loss.rst", category=series_category, labels=series_labels("compute-loss curves (Fig 16)")),
        learning_curves=report("results/analysis/{series}/learning_curves.png", caption="../report/learning_curves.rst", category=series_category, labels=series_labels("learning curves")),
        frontier=report("results/analysis/{series}/frontier.png", caption="../report/frontier.rst", category=series_category, labels=series_labels("forget-retain frontier (Fig 4)")),
        slowdown=report("results/analysis/{series}/slowdown.png", caption="../report/slowdown.rst", category=series_category, labels=series_labels("loss-matched slowdown (Figs 1, 19)")),
        pareto=report("results/analysis/{series}/pareto.png", caption="../report/pareto.rst", category=series_category, labels=series_labels("token vs document Pareto (Fig 3)")),
    params:
        fit_sizes=config["analysis"]["fit_sizes"],
        fit_form=config["analysis"]["fit"],
    log:
        "results/logs/analysis/{series}/analyze_series.log",
    resources:
        mem_mb=ANALYSIS_RESOURCES["mem_mb"],
        runtime=ANALYSIS_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/analyze_series.py"


rule scorecard:
    input:
        unpack(scorecard_inputs),
    output:
        csv="results/analysis/scorecard.csv",
        html=report("results/analysis/scorecard.html", caption="../report/scorecard.rst", category="0. Claims scorecard", labels={"table": "claims scorecard"}),
        findings=report("results/analysis/findings.html", caption="../report/findings.rst", category="0. Claims scorecard", labels={"table": "findings"}),
    params:
        fit_sizes=config["analysis"]["fit_sizes"],
        main_filter=series_filter("main"),
        ablation_filter=series_filter("ablation"),
        filter_specs=canonical(config["filters"]),
        fit_form=config["analysis"]["fit"],
    log:
        "results/logs/analysis/scorecard.log",
    resources:
        mem_mb=ANALYSIS_RESOURCES["mem_mb"],
        runtime=ANALYSIS_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/scorecard.py"
