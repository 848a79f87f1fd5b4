"""Per-position random draws: a uniform number per corpus position, the same every time the
position is read, so per-token randomness survives epochs, resumes and scattering over shards.

Independent things draw from independent *streams* (DESIGN §4 trap 8): a simulated classifier's
errors, the tie-breaking of scores, the choice among tokens tied at a threshold, and label-noise
flips each hash the position with their own stream key. (A first version drew label noise from
the same seed and positions as the simulated classifier's errors, so noise at the classifier's
own error rate flipped exactly its mistakes back and produced a perfect filter.)

Numpy only (no torch): annotation jobs import it and stay light.
"""

from __future__ import annotations

import hashlib

import numpy as np

STREAMS = ("classifier_errors", "document_errors", "tie_break", "threshold_ties", "label_noise", "structured_noise")


def stream_seed(seed: int, stream: str) -> int:
    """A 64-bit seed for ``stream`` derived from the run's seed."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; streams: {STREAMS}")
    digest = hashlib.blake2b(f"{seed}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def position_uniforms(positions: np.ndarray, seed: int, stream: str) -> np.ndarray:
    """A uniform [0, 1) number per token position of ``stream`` (splitmix64 of position + offset)."""
    offset = np.uint64(stream_seed(seed, stream))
    with np.errstate(over="ignore"):
        z = np.asarray(positions).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + offset
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def position_normals(positions: np.ndarray, seed: int, stream: str) -> np.ndarray:
    """A standard normal per position of ``stream`` (Box-Muller on two derived uniforms)."""
    u1 = position_uniforms(2 * np.asarray(positions, dtype=np.int64), seed, stream)
    u2 = position_uniforms(2 * np.asarray(positions, dtype=np.int64) + 1, seed, stream)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)
