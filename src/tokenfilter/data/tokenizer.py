"""Tokenizers: train a byte-level BPE on the corpus, or load a named one (paper: cl100k_base).

Whatever the source, five special tokens exist as single ids: end-of-text (document separator),
``<|hidden|>`` (what token removal puts in place of a forget token, paper Fig 2),
``<|refusal|>`` (paper App B.4) and the two ChatML markers. Corpus text is encoded *ordinarily*:
a document that happens to contain the string ``<|endoftext|>`` gets ordinary tokens for it, never
the special id (as tiktoken's ``encode_ordinary``), so data cannot forge document boundaries.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tokenfilter.errors import ConfigError
from tokenfilter.io import atomic_path, write_json

SPECIAL_TOKENS = {
    "eot": "<|endoftext|>",
    "hidden": "<|hidden|>",
    "refusal": "<|refusal|>",
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",
}
META_FILE = "tokenfilter_tokenizer.json"


def padded_vocab_size(n: int, multiple: int = 64) -> int:
    """Embedding rows for a vocabulary of ``n`` ids, rounded up for fast matmuls (cl100k → 100288)."""
    return ((n + multiple - 1) // multiple) * multiple


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE tokenizer; special tokens take the first ids."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_pretrained(name: str) -> Tokenizer:
    """A tokenizer from a local ``tokenizer.json`` (file or directory) or a Hugging Face repo id.

    The special tokens above are added if the tokenizer lacks them; for cl100k_base
    (e.g. ``Xenova/gpt-4``) ``<|hidden|>`` then gets id 100277, as in the authors' code.
    """
    path = Path(name)
    if path.is_dir():
        path = path / "tokenizer.json"
    if path.is_file():
        tokenizer = Tokenizer.from_file(str(path))
    else:
        try:
            tokenizer = Tokenizer.from_pretrained(name)
        except Exception as exc:  # network, offline mode, or a wrong name
            raise ConfigError(
                f"tokenizer.name: cannot load {name!r}: it is not a local tokenizer.json or directory, "
                f"and loading it from the Hugging Face hub failed ({exc})"
            ) from exc
    missing = [t for t in SPECIAL_TOKENS.values() if tokenizer.token_to_id(t) is None]
    if missing:
        tokenizer.add_special_tokens(missing)
    return tokenizer


def _byte_alphabet() -> dict[int, str]:
    """Byte-level BPE's byte → character map (GPT-2's): printable Latin-1 bytes stand for
    themselves, the other 68 bytes for the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _ordinary(tokenizer: Tokenizer) -> Tokenizer:
    """A copy that treats special-token strings in text as ordinary text."""
    spec = json.loads(tokenizer.to_str())
    spec["added_tokens"] = []
    return Tokenizer.from_str(json.dumps(spec))


@dataclass
class TextTokenizer:
    """A tokenizer plus the ids of the project's special tokens."""

    tokenizer: Tokenizer
    special_ids: dict[str, int]

    def __post_init__(self) -> None:
        self._ordinary = _ordinary(self.tokenizer)
        self._token_bytes: list[bytes] | None = None

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> "TextTokenizer":
        ids = {}
        for key, token in SPECIAL_TOKENS.items():
            token_id = tokenizer.token_to_id(token)
            if token_id is None:
                raise ValueError(f"tokenizer lacks the special token {token}")
            ids[key] = token_id
        return cls(tokenizer, ids)

    @property
    def eot_id(self) -> int:
        return self.special_ids["eot"]

    @property
    def hidden_id(self) -> int:
        return self.special_ids["hidden"]

    @property
    def vocab_size(self) -> int:
        """Number of ids in use (the model pads its embedding to :func:`padded_vocab_size`)."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode_batch(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Ordinary encoding of each text: (ids int64 [n], character offsets int64 [n, 2])."""
        out = []
        for enc in self._ordinary.encode_batch(list(texts), add_special_tokens=False):
            ids = np.asarray(enc.ids, dtype=np.int64)
            offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
            out.append((ids, offsets))
        return out

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0][0].tolist()

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_bytes(self) -> list[bytes]:
        """The bytes each id stands for (special tokens: empty), computed once.

        Byte-level BPE (ours, cl100k) maps each byte to a printable character in its vocabulary;
        the inverse of that map gives a token's exact bytes, also for tokens that hold part of a
        multi-byte character. Other tokenizers fall back to decoding the id alone.
        """
        if self._token_bytes is None:
            n = self.vocab_size
            added = self.tokenizer.get_added_tokens_decoder()
            special = set(self.special_ids.values()) | {i for i, token in added.items() if token.special}
            decoder = json.loads(self.tokenizer.to_str()).get("decoder") or {}
            byte_of = {ch: b for b, ch in _byte_alphabet().items()} if decoder.get("type") == "ByteLevel" else None
            out = []
            for i in range(n):
                piece = self.tokenizer.id_to_token(i)
                if i in special or piece is None:
                    out.append(b"")
                elif byte_of is not None and all(ch in byte_of for ch in piece):
                    out.append(bytes(byte_of[ch] for ch in piece))
                else:
                    out.append(self.tokenizer.decode([i], skip_special_tokens=False).encode("utf-8"))
            self._token_bytes = out
        return self._token_bytes

    def text_with_offsets(self, ids: Sequence[int], special_text: str = "\n\n") -> tuple[str, np.ndarray]:
        """The text a run of ids spells and each id's character span [start, end) in it, as
        :meth:`encode_batch` reports offsets: a token holding part of a multi-byte character spans
        that whole character (tests check the two agree). Bytes that are not valid UTF-8 (a window
        cut inside a character) become U+FFFD. Special tokens spell ``special_text`` (a document
        boundary reads as a paragraph break to another tokenizer's model).
        """
        import codecs

        table = self.token_bytes()
        special = set(self.special_ids.values())
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        parts: list[str] = []
        spans = np.zeros((len(ids), 2), dtype=np.int64)
        length = 0
        for k, i in enumerate(ids):
            i = int(i)
            if i in special:
                piece = decoder.decode(b"", final=True) + special_text
                decoder.reset()
            else:
                piece = decoder.decode(table[i] if 0 <= i < len(table) else b"")
            pending = bool(decoder.getstate()[0])  # bytes of a character the next token completes
            spans[k] = (length, length + len(piece) + pending)
            parts.append(piece)
            length += len(piece)
        parts.append(decoder.decode(b"", final=True))
        return "".join(parts), spans

    def save(self, path: str | os.PathLike) -> None:
        """Save as a directory that ``transformers.AutoTokenizer`` can load; ``tokenizer.json`` last.

        ``path`` is the ``tokenizer.json`` file; the other files go beside it, so the file a
        workflow rule declares appears only once everything else is in place.
        """
        path = Path(path)
        directory = path.parent
        directory.mkdir(parents=True, exist_ok=True)
        hf = self.hf_tokenizer()
        tmp_dir = directory / f".save-{os.getpid()}"
        try:
            hf.save_pretrained(tmp_dir)
            for name in os.listdir(tmp_dir):
                if name != "tokenizer.json":
                    os.replace(tmp_dir / name, directory / name)
            write_json(directory / META_FILE, {"special_ids": self.special_ids, "vocab_size": self.vocab_size,
                                               "padded_vocab_size": padded_vocab_size(self.vocab_size)})
            with atomic_path(path) as tmp:
                os.replace(tmp_dir / "tokenizer.json", tmp)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    def hf_tokenizer(self):
        """The tokenizer as a ``transformers.PreTrainedTokenizerFast`` (for lm-eval and generate)."""
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(
            tokenizer_object=self.tokenizer,
            eos_token=SPECIAL_TOKENS["eot"],
            bos_token=SPECIAL_TOKENS["eot"],
            pad_token=SPECIAL_TOKENS["eot"],
            additional_special_tokens=[SPECIAL_TOKENS[k] for k in ("hidden", "refusal", "im_start", "im_end")],
            chat_template=CHAT_TEMPLATE,
        )


# ChatML, as the authors' chat training used (paper App A.3): <|im_start|>role\ncontent<|im_end|>\n
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def load_tokenizer(path: str | os.PathLike) -> TextTokenizer:
    """Load a tokenizer saved by :meth:`TextTokenizer.save` (path of its ``tokenizer.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    return TextTokenizer.from_tokenizer(Tokenizer.from_file(str(path)))


def build_tokenizer(kind: str, texts: Iterable[str] | None = None, vocab_size: int | None = None,
                    name: str | None = None) -> TextTokenizer:
    """``kind="train"``: BPE of ``vocab_size`` on ``texts``; ``kind="pretrained"``: load ``name``."""
    if kind == "train":
        return TextTokenizer.from_tokenizer(train_bpe(texts, vocab_size))
    if kind == "pretrained":
        return TextTokenizer.from_tokenizer(load_pretrained(name))
    raise ConfigError(f"tokenizer.kind: {kind!r} is not one of ['train', 'pretrained']")
