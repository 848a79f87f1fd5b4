"""Tokenisation throughput and peak memory of ``tokenize_corpus`` at two corpus sizes.

The claim under test (``tokenfilter.data.shards``): tokenisation streams documents in batches and
appends to the shard files, so its memory stays flat as the corpus grows. Two built-in-world
corpora are generated with ``generate_synthetic`` (default document recipe), one BPE tokenizer is
trained once (on the first ``--train-docs`` documents of the smaller corpus, as the workflow's
``tokenizer.train_max_docs`` does) and saved, and then every measurement runs in a FRESH
subprocess that loads the saved tokenizer and tokenises one whole corpus into a shard, exactly as
``workflow/scripts/tokenize.py`` does. The child reports its wall time and its peak resident set
size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), both before tokenising (imports + tokenizer)
and after. Sizes alternate between repeats so machine-load drift hits both alike; the table gives
the median throughput and the largest peak RSS over repeats, and the ratio large / small.

Linux carries a process's ``ru_maxrss`` across ``execve``, and a child spawned with vfork/fork
starts from its parent's high-water mark: a child of a 200 MB parent reports at least 200 MB
whatever it does. So the parent here imports only the standard library and does the heavy
preparation (corpus generation, tokenizer training) in a subprocess of its own; every child is
spawned from a parent of ~10-20 MB, well below any child's own peak. The child also reports the
kernel's per-address-space peak (``VmHWM`` in ``/proc/self/status``) as a cross-check.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_tokenize.py \\
        --sizes 20000 80000 --repeats 3 --json-out /tmp/bench_tokenize.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _vm_hwm_mb() -> float | None:
    """Peak RSS of this address space (Linux only; not inherited from the parent)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports kB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# --- child: one measurement in a fresh process ------------------------------------------------

def child(args: argparse.Namespace) -> None:
    from tokenfilter.data.shards import tokenize_corpus
    from tokenfilter.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    meta = tokenize_corpus(args.corpus, tokenizer, args.out, batch_docs=args.batch_docs, progress=False)
    wall = time.perf_counter() - start
    rss_peak = _peak_rss_mb()
    print(json.dumps({
        "n_docs": meta["n_docs"],
        "n_tokens": meta["n_tokens"],
        "wall_s": wall,
        "tokens_per_s": meta["n_tokens"] / wall,
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_peak,
        "vm_hwm_mb": _vm_hwm_mb(),
        "shard_mb": sum(f.stat().st_size for f in Path(args.out).iterdir()) / 2**20,
    }))


# --- parent -------------------------------------------------------------------------------------

def _machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    import numpy
    import pyarrow
    import tokenizers

    return {
        "cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "tokenizers": tokenizers.__version__, "pyarrow": pyarrow.__version__, "numpy": numpy.__version__,
        "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "(unset: rayon threads on)"),
    }


def prepare(args: argparse.Namespace) -> None:
    """Child mode: generate the corpora and train + save the tokenizer; print a JSON summary."""
    workdir, sizes = Path(args.workdir), sorted(args.sizes)
    seed, vocab, train_docs = args.seed, args.vocab, args.train_docs
    from tokenfilter.data.corpus import iter_corpus
    from tokenfilter.data.synthetic.build import SyntheticParams, default_outputs, generate_synthetic
    from tokenfilter.data.tokenizer import build_tokenizer

    corpora: dict[int, dict] = {}
    for n in sizes:
        out = default_outputs(workdir / f"world_{n}")
        start = time.perf_counter()
        generate_synthetic(SyntheticParams.from_config({"n_docs": n, "n_eval_docs": 1}), seed, 0.01, out)
        text_bytes = sum(len(r["text"].encode("utf-8")) for r in iter_corpus(out["corpus"], ["text"]))
        corpora[n] = {"corpus": str(out["corpus"]), "text_mb": text_bytes / 2**20,
                      "parquet_mb": out["corpus"].stat().st_size / 2**20,
                      "generate_s": time.perf_counter() - start}
        print(f"generated {n} docs: {corpora[n]['text_mb']:.1f} MB of text "
              f"({corpora[n]['generate_s']:.0f} s)", file=sys.stderr)
    smallest = corpora[min(sizes)]["corpus"]
    texts = (r["text"] for i, r in zip(range(train_docs), iter_corpus(smallest, ["text"])))
    tokenizer = build_tokenizer("train", texts, vocab_size=vocab)
    tok_path = workdir / "tokenizer" / "tokenizer.json"
    tokenizer.save(tok_path)
    print(json.dumps({"corpora": {str(n): c for n, c in corpora.items()}, "tokenizer": str(tok_path),
                      "vocab_size": tokenizer.vocab_size, "machine": _machine()}))


def _run_child(*extra: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *extra]
    proc = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(corpus: str, tok_path: str, out: Path, batch_docs: int) -> dict:
    result = _run_child("--child", "--corpus", corpus, "--tokenizer", tok_path, "--out", str(out),
                        "--batch-docs", str(batch_docs))
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[20000, 80000], metavar=("SMALL", "LARGE"),
                        help="corpus sizes in documents (default: 20000 80000)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process measurements per size")
    parser.add_argument("--batch-docs", type=int, default=512, help="tokenize_corpus batch_docs (its default)")
    parser.add_argument("--vocab", type=int, default=1024, help="BPE vocabulary size")
    parser.add_argument("--train-docs", type=int, default=20000, help="documents the tokenizer is trained on")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--workdir", type=Path, default=None, help="where corpora go (default: a temp dir, removed)")
    parser.add_argument("--json-out", type=Path, default=None, help="write all results as JSON here")
    # child mode (internal)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.prepare:
        prepare(args)
        return

    sizes = sorted(args.sizes)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_tokenize_"))
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    try:
        prepared = _run_child("--prepare", "--workdir", str(workdir), "--sizes", *map(str, sizes),
                              "--seed", str(args.seed), "--vocab", str(args.vocab),
                              "--train-docs", str(args.train_docs))
        corpora = {int(n): c for n, c in prepared["corpora"].items()}
        tok_path = prepared["tokenizer"]
        samples: dict[int, list[dict]] = {n: [] for n in sizes}
        for r in range(args.repeats):
            for n in (sizes if r % 2 == 0 else sizes[::-1]):
                s = measure(corpora[n]["corpus"], tok_path, workdir / f"shard_{n}", args.batch_docs)
                samples[n].append(s)
                print(f"repeat {r}: {n} docs  {s['tokens_per_s']:,.0f} tok/s  peak RSS {s['rss_peak_mb']:.1f} MB",
                      file=sys.stderr)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    load_end = os.getloadavg()

    rows = []
    for n in sizes:
        ss = samples[n]
        rows.append({
            "n_docs": n,
            "n_tokens": ss[0]["n_tokens"],
            "text_mb": corpora[n]["text_mb"],
            "shard_mb": ss[0]["shard_mb"],
            "tokens_per_s_median": statistics.median(s["tokens_per_s"] for s in ss),
            "wall_s_median": statistics.median(s["wall_s"] for s in ss),
            "rss_before_mb_max": max(s["rss_before_mb"] for s in ss),
            "rss_peak_mb_max": max(s["rss_peak_mb"] for s in ss),
            "rss_growth_mb_max": max(s["rss_peak_mb"] - s["rss_before_mb"] for s in ss),
            "vm_hwm_mb_max": max((s["vm_hwm_mb"] or 0.0) for s in ss),
        })
    small, large = rows
    ratios = {
        "tokens": large["n_tokens"] / small["n_tokens"],
        "rss_peak": large["rss_peak_mb_max"] / small["rss_peak_mb_max"],
        "rss_growth": large["rss_growth_mb_max"] / max(small["rss_growth_mb_max"], 1e-9),
        "tokens_per_s": large["tokens_per_s_median"] / small["tokens_per_s_median"],
    }

    print("\n| docs | tokens | text MB | shard MB | tok/s (median) | wall s | RSS before MB | peak RSS MB | "
          "growth MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['n_docs']:,} | {row['n_tokens']:,} | {row['text_mb']:.1f} | {row['shard_mb']:.1f} | "
              f"{row['tokens_per_s_median']:,.0f} | {row['wall_s_median']:.2f} | {row['rss_before_mb_max']:.1f} | "
              f"{row['rss_peak_mb_max']:.1f} | {row['rss_growth_mb_max']:.1f} |")
    print(f"\nlarge/small: tokens x{ratios['tokens']:.2f}, peak RSS x{ratios['rss_peak']:.3f}, "
          f"RSS growth during tokenisation x{ratios['rss_growth']:.2f}, throughput x{ratios['tokens_per_s']:.2f}")
    parent_rss = _peak_rss_mb()
    print(f"peak RSS of this (parent) process: {parent_rss:.1f} MB; VmHWM cross-check: "
          + ", ".join(f"{r['n_docs']:,} docs {r['vm_hwm_mb_max']:.1f} MB" for r in rows))
    print(f"load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f}")

    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({
            "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
            "machine": prepared["machine"], "load_average_start": load_start, "load_average_end": load_end,
            "parent_peak_rss_mb": parent_rss, "vocab_size": prepared["vocab_size"],
            "settings": {"sizes": sizes, "repeats": args.repeats, "batch_docs": args.batch_docs,
                         "vocab": args.vocab, "train_docs": args.train_docs, "seed": args.seed},
            "corpora": {str(n): {k: v for k, v in c.items() if k != "corpus"} for n, c in corpora.items()},
            "rows": rows, "ratios_large_over_small": ratios,
            "samples": {str(n): s for n, s in samples.items()},
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
