"""Train one run: in this process, or under torchrun when the run asks for several GPUs."""

import json
import subprocess
import sys
from pathlib import Path

from tokenfilter.config.experiments import runtime_settings
from tokenfilter.logs import setup_job_logging
from tokenfilter.train.__main__ import run_spec

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
# Knobs that do not change the model are read here, not passed as params (a change must not retrain).
spec = dict(sm.params.spec, **runtime_settings(sm.config), out_dir=str(Path(sm.output.summary).parent),
            checkpoint_dir=sm.params.checkpoint_dir)
if sm.input.hparams:  # training.hparams_from: the learning-rate sweep's Table 2 (a change retrains: an input)
    from tokenfilter.analysis.lr_sweep import sweep_hparams_for  # pandas: only where it is needed

    spec.update(sweep_hparams_for(sm.input.hparams, spec["model"]))
    log.info("learning rate %g, weight decay %g from %s", spec["lr"], spec["weight_decay"], sm.input.hparams)
if sm.params.gpus > 1:
    spec_path = Path(sm.params.checkpoint_dir) / "spec.json"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec))
    cmd = ["torchrun", "--standalone", f"--nproc_per_node={sm.params.gpus}", "-m", "tokenfilter.train", str(spec_path)]
    log.info("launching %s", " ".join(cmd))
    subprocess.run(cmd, check=True, stdout=sys.stderr, stderr=sys.stderr)
else:
    summary = run_spec(spec)
    log.info("finished %s: %d steps, %d tokens, %.0f s", summary["run"], summary["steps"], summary["tokens"],
             summary["wall_time_s"])
