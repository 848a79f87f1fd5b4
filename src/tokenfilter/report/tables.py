"""Tables for the report: each written as CSV (for analysis) and as a small styled HTML page
(what ``snakemake --report`` embeds)."""

from __future__ import annotations

import html
import os

import pandas as pd

from tokenfilter.io import atomic_open

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 13px; margin: 12px; }
h3 { font-size: 15px; margin: 0 0 8px 0; }
p.note { color: #555; max-width: 60em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; }
td.text, th.text { text-align: left; }
tr.holds td.verdict { background: #d9f2d9; }
tr.fails td.verdict { background: #f8d7d7; }
tr.unsure td.verdict { background: #fcf1cf; }
tr.na td.verdict { background: #eee; }
"""


def _cell(value) -> str:
    if isinstance(value, float):
        if pd.isna(value):
            return ""
        return f"{value:.4g}"
    return html.escape(str(value))


def to_html(df: pd.DataFrame, title: str, note: str | None = None, row_class: str | None = None) -> str:
    """A self-contained HTML page for ``df``; ``row_class`` names a column whose values become
    CSS classes of the rows (used to colour verdicts)."""
    columns = [c for c in df.columns if c != row_class]
    text_cols = {c for c in columns if df[c].dtype == object}
    head = "".join(f'<th class="{"text" if c in text_cols else ""}">{html.escape(str(c))}</th>' for c in columns)
    rows = []
    for _, row in df.iterrows():
        cls = f' class="{html.escape(str(row[row_class]))}"' if row_class else ""
        cells = "".join(
            f'<td class="{"text " if c in text_cols else ""}{"verdict" if c == "verdict" else ""}">{_cell(row[c])}</td>'
            for c in columns
        )
        rows.append(f"<tr{cls}>{cells}</tr>")
    note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{_STYLE}</style></head><body>"
            f"<h3>{html.escape(title)}</h3>{note_html}<table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></body></html>\n")


def write_table(df: pd.DataFrame, csv_path: str | os.PathLike | None = None, html_path: str | os.PathLike | None = None,
                title: str = "", note: str | None = None, row_class: str | None = None) -> None:
    if csv_path is not None:
        with atomic_open(csv_path, "w", encoding="utf-8", newline="") as f:
            df.drop(columns=[row_class] if row_class else []).to_csv(f, index=False)
    if html_path is not None:
        with atomic_open(html_path, "w", encoding="utf-8") as f:
            f.write(to_html(df, title, note, row_class))
