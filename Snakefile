# tokenfilter: "Shaping capabilities with token-level data filtering" (Rathi & Radford 2026),
# end to end. `snakemake --cores all` runs the built-in default (config/config.yaml);
# `snakemake --profile slurm --configfile config/paper.yaml` runs the paper's scale on SLURM.
from snakemake.utils import min_version

min_version("9.0")


# The built-in default applies only when no --configfile is given. Snakemake would otherwise
# deep-merge the two (the CPU ladder's sizes would join the paper's ladder, and so on).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/classifiers.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/robustness.smk"
include: "workflow/rules/capabilities.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        all_targets(),
    default_target: True


# Everything that needs the network, in one target: compute nodes are often offline, so run
# `snakemake --profile slurm --configfile config/paper.yaml downloads` first where the network is
# (e.g. with `--executor local` on a login node); every later job reads only local files.
rule downloads:
    input:
        network_inputs(),
