"""Tokens to parity of every attack, Table 4, the RMU table, Figs 7 and 26 and the E9 claims."""

from tokenfilter.report.tables import write_table
from tokenfilter.logs import setup_job_logging
from tokenfilter.robustness.report import (chosen_settings, parity_table, plot_curves, plot_parity, rmu_table,
                                           robustness_claims, seeded_runs)

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
table = parity_table(sm.input.attacks)
write_table(table.drop(columns=["curve"]), csv_path=sm.output.parity)
write_table(chosen_settings(table), html_path=sm.output.table4,
            title="Attacker settings reaching parity fastest (paper Table 4)",
            note="Per target and size, the (learning rate, weight decay) of the sweep with the fewest finetuning "
                 "tokens to the baseline's forget loss; a setting that never reached parity counts as a lower bound.")
rmu = rmu_table(sm.input.rmu, sm.input.rmu_runs)
write_table(rmu, html_path=sm.output.rmu, title="RMU against its bar",
            note="Held-out forget and retain-far loss of each baseline before and after RMU; the bar says whether "
                 "RMU unlearned (forget loss up by at least the first margin) without breaking the model (retain-far "
                 "loss up by at most the second).")
best = seeded_runs(table)  # the setting every seed ran (the sweep's other settings: seed 0 only)
plot_parity(best, sm.output.fig7)
plot_curves(best, sm.output.fig26)
claims = robustness_claims(table, rmu)
write_table(claims, csv_path=sm.output.claims)
log.info("\n%s", claims[["claim", "verdict"]].to_string())
