"""Where a run's time went: the Snakemake ``benchmark:`` files of its jobs, summed per stage and,
for training and evaluation, per ladder rung."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

BENCHMARK_ROOT = "benchmarks"


def read_benchmark(path: str | os.PathLike) -> dict:
    """One job's benchmark file: wall seconds, CPU seconds and peak RSS (MB)."""
    frame = pd.read_csv(path, sep="\t")
    row = frame.iloc[-1]  # a rule benchmarked several times keeps one line per repeat
    cpu = row.get("cpu_time")
    return {"wall_s": float(row["s"]), "cpu_s": float(cpu) if pd.notna(cpu) else float("nan"),
            "max_rss_mb": float(row.get("max_rss", float("nan")))}


def timings_table(paths: list[str | os.PathLike]) -> pd.DataFrame:
    """Rows per stage (and per stage and rung where the path carries a run), plus a total."""
    from tokenfilter.config.experiments import Run

    rows = []
    for path in paths:
        parts = Path(path).with_suffix("").parts
        root = parts.index(BENCHMARK_ROOT) if BENCHMARK_ROOT in parts else None
        stage = parts[root + 1] if root is not None else "other"
        rung = ""
        if stage in ("pretrain", "evaluate") and root is not None:
            try:
                rung = Run.parse("/".join(parts[root + 2:])).size
            except ValueError:
                rung = ""
        rows.append({"stage": stage, "rung": rung, **read_benchmark(path)})
    jobs = pd.DataFrame(rows, columns=["stage", "rung", "wall_s", "cpu_s", "max_rss_mb"])
    if jobs.empty:
        return jobs
    summary = []
    for (stage, rung), group in jobs.groupby(["stage", "rung"], sort=False):
        summary.append({"stage": stage, "rung": rung, "jobs": len(group), "wall_s": group["wall_s"].sum(),
                        "core_minutes": group["cpu_s"].sum() / 60, "longest_job_s": group["wall_s"].max(),
                        "max_rss_mb": group["max_rss_mb"].max()})
    for stage, group in jobs.groupby("stage", sort=False):
        if (group["rung"] != "").any():
            summary.append({"stage": stage, "rung": "(all)", "jobs": len(group), "wall_s": group["wall_s"].sum(),
                            "core_minutes": group["cpu_s"].sum() / 60, "longest_job_s": group["wall_s"].max(),
                            "max_rss_mb": group["max_rss_mb"].max()})
    summary.append({"stage": "(all)", "rung": "", "jobs": len(jobs), "wall_s": jobs["wall_s"].sum(),
                    "core_minutes": jobs["cpu_s"].sum() / 60, "longest_job_s": jobs["wall_s"].max(),
                    "max_rss_mb": jobs["max_rss_mb"].max()})
    return pd.DataFrame(summary)
