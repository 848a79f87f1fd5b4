"""The report: tables as CSV and small styled HTML pages that ``snakemake --report`` embeds."""
