"""Pseudo-word names built from one shared stock of syllables.

Real forget text shares most of its sub-word pieces with retain text. If medical names used their
own letters, a filtered model would meet entirely unseen pieces at evaluation time and its loss
would explode far beyond anything a baseline shows (DESIGN §5, what the prototype got wrong). So
every domain draws its names from the same onsets, vowels and codas; the domains differ only
mildly, in which endings they prefer (as "-itis" or "-ol" hint at medicine in English).
"""

from __future__ import annotations

import numpy as np

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
          "br", "dr", "kr", "st", "tr", "th", "ch", "sh"]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "u", "ai", "ou"]
CODAS = ["", "", "", "", "", "n", "r", "s", "l", "m"]

# Endings shared by all domains; each domain weights them differently (index-aligned weights).
ENDINGS = ["ine", "ol", "ase", "ium", "ar", "on", "ex", "is", "an", "ora", "ite", "el", "a", "o"]
ENDING_WEIGHTS = {
    "forget": [3, 3, 1, 2, 1, 1, 3, 3, 1, 1, 2, 1, 1, 1],
    "retain_near": [2, 1, 3, 2, 1, 2, 1, 1, 2, 2, 1, 1, 2, 1],
    "retain_far": [1, 1, 1, 1, 3, 2, 1, 1, 3, 2, 1, 3, 3, 3],
}


class NameMaker:
    """Draws unique pseudo-words; uniqueness is global so no name means two things."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.used: set[str] = set()

    def _syllable(self) -> str:
        r = self.rng
        return ONSETS[r.integers(len(ONSETS))] + VOWELS[r.integers(len(VOWELS))] + CODAS[r.integers(len(CODAS))]

    def word(self, domain: str, syllables: tuple[int, int] = (1, 3)) -> str:
        weights = np.asarray(ENDING_WEIGHTS[domain], dtype=float)
        weights /= weights.sum()
        for _ in range(10_000):
            n = int(self.rng.integers(syllables[0], syllables[1] + 1))
            stem = "".join(self._syllable() for _ in range(n))
            candidate = stem + ENDINGS[self.rng.choice(len(ENDINGS), p=weights)]
            if candidate not in self.used and 4 <= len(candidate) <= 11:
                self.used.add(candidate)
                return candidate
        raise RuntimeError("ran out of unique pseudo-words; lower the world size")

    def words(self, domain: str, n: int, capitalise: bool = False, syllables: tuple[int, int] = (1, 3)) -> list[str]:
        out = [self.word(domain, syllables) for _ in range(n)]
        return [w.capitalize() for w in out] if capitalise else out
