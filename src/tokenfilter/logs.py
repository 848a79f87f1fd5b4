"""Logging setup for workflow jobs: everything a job prints goes to its rule's log file."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def setup_job_logging(log_path: str | os.PathLike | None, level: int = logging.INFO) -> logging.Logger:
    """Send the ``tokenfilter`` loggers and stderr (progress bars, warnings) to ``log_path``."""
    logger = logging.getLogger("tokenfilter")
    logger.setLevel(level)
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "w", buffering=1, encoding="utf-8")
        sys.stderr = stream
    else:
        stream = sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.handlers = [handler]
    logging.captureWarnings(True)
    try:  # transformers' per-file "Writing model shards" bars say nothing useful in a job log
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    return logger
