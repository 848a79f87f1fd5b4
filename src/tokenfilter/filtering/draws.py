"""Per-position random draws: a uniform number per corpus position, the same every time the
position is read, so per-token randomness (a simulated classifier's errors, label noise,
tie-breaking) survives epochs, resumes and scattering over shards.

Numpy only (no torch): annotation jobs import it and stay light.
"""

from __future__ import annotations

import numpy as np


def position_uniforms(positions: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per token position (splitmix64 of position + a seed offset)."""
    with np.errstate(over="ignore"):
        z = positions.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)
