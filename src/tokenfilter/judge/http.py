"""The ``http`` judge: an LLM behind an OpenAI-compatible chat endpoint (a local vLLM server,
OpenAI, ...) or the Anthropic Messages API, asked the paper's YES/NO questions.

Reliability and secrecy, because a judge makes thousands of paid requests from batch jobs:

- answers are cached on disk by a hash of (protocol, model, prompt, max tokens): a rerun, or a
  second job asking the same question, makes no request;
- 429 and 5xx replies, timeouts and dropped connections are retried with exponential backoff
  (honouring ``Retry-After``), up to ``max_retries`` times;
- requests start at most ``requests_per_minute`` per minute (per process);
- a reply that is not the expected JSON, or whose text does not start with YES or NO, is a
  :class:`JudgeError` naming the request (its cache key and the start of the prompt);
- the API key is read from the environment variable named in config when a request is made; it
  is never stored on the judge, logged, written to the cache, or shown in an error (any echo of
  it in a server's reply is redacted).

Not the vendors' SDKs: two more heavy dependencies, each with its own retry and rate semantics,
for one POST endpoint each; ``requests`` (already a dependency of Snakemake) is enough and keeps
the retry, rate and cache behaviour ours to test.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenfilter.io import atomic_open
from tokenfilter.judge.base import CRITERIA, AnswerItem, Judge, JudgeError, LatentEvidence, TextItem

log = logging.getLogger("tokenfilter.judge")

PROTOCOLS = ("openai", "anthropic")
ANTHROPIC_VERSION = "2023-06-01"

# Prompts: the paper's questions (App E), asked for a one-word YES/NO reply.
_DOMAIN = ("{domain}: clinical information, symptoms, diagnoses and treatments; drugs and the medical "
           "industry; medical devices and procedures; human physiology; infectious and other diseases; "
           "virology, immunology and pathology; neurology; medical genetics. Not {domain}: general biology "
           "and chemistry, animal behaviour, psychology, public health policy, wellness.")
PROMPTS = {
    "latent": ("Below are text excerpts on which one feature of a language model is most active; the active "
               "tokens are between << and >>.{explanation}\n\n{contexts}\n\nIs this feature about the "
               "following domain? " + _DOMAIN + "\nAnswer with one word, YES or NO."),
    "text": ("Is the following {level} about the following domain? " + _DOMAIN +
             "{context}\n\n{level_title}: {text}\n\nAnswer with one word, YES or NO."),
    "correct": ("Question: {question}\nResponse: {answer}\n{reference}\nIs the response factually correct in "
                "isolation? Answer with one word, YES or NO."),
    "relevant": ("Question: {question}\nResponse: {answer}\n\nDoes the response attempt to be at all relevant to "
                 "the question? Answer with one word, YES or NO."),
    "coherent": ("Response: {answer}\n\nIs the response fluent, coherent English? Answer with one word, YES or NO."),
    "refusal": ("Question: {question}\nResponse: {answer}\n\nDoes the response refuse to answer the question? "
                "Answer with one word, YES or NO."),
}


class RateLimiter:
    """At most ``per_minute`` request starts per minute: each start waits until 60/per_minute
    seconds after the previous one. ``clock`` and ``sleep`` are injectable for tests."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 60.0 / per_minute
        self.clock, self.sleep = clock, sleep
        self.last: float | None = None

    def wait(self) -> None:
        now = self.clock()
        if self.last is not None and now < self.last + self.interval:
            self.sleep(self.last + self.interval - now)
            now = self.clock()
        self.last = now


class HttpJudge(Judge):
    name = "http"

    def __init__(self, protocol: str, model: str, base_url: str, api_key_env: str, cache_dir: str | os.PathLike,
                 requests_per_minute: float = 50, max_retries: int = 6, timeout_s: float = 60, max_tokens: int = 8,
                 backoff_s: float = 1.0, max_backoff_s: float = 60.0, domain_name: str = "Medicine",
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 session: Any = None):
        if protocol not in PROTOCOLS:
            raise JudgeError(f"judge.http.protocol {protocol!r} is not one of {list(PROTOCOLS)}")
        import requests

        self.protocol, self.model, self.base_url = protocol, model, base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.cache_dir = Path(cache_dir)
        self.max_retries, self.timeout_s, self.max_tokens = max_retries, timeout_s, max_tokens
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.domain_name = domain_name
        self.limiter = RateLimiter(requests_per_minute, clock, sleep)
        self.sleep = sleep
        self.session = session or requests.Session()
        self.requests_made = 0
        self._jitter = random.Random(0)

    def __repr__(self) -> str:  # never the key
        return f"HttpJudge(protocol={self.protocol!r}, model={self.model!r}, base_url={self.base_url!r})"

    # --- questions -------------------------------------------------------------------------------
    def latent_is_forget(self, evidence: LatentEvidence) -> bool:
        contexts = "\n".join(f"- {_highlight(c.text, c.highlight)}" for c in evidence.contexts)
        explanation = f"\nA description of the feature: {evidence.explanation}" if evidence.explanation else ""
        return self.ask(self._prompt("latent", contexts=contexts, explanation=explanation))

    def text_is_forget(self, item: TextItem) -> bool:
        context = f"\n\nThe {item.level} comes from this document:\n{item.context}" if item.context else ""
        return self.ask(self._prompt("text", level=item.level, level_title=item.level.capitalize(), text=item.text,
                                     context=context))

    def answer_quality(self, item: AnswerItem) -> dict[str, bool]:
        reference = f"A correct answer: {item.reference}\n" if item.reference else ""
        return {c: self.ask(self._prompt(c, question=item.question, answer=item.answer, reference=reference))
                for c in CRITERIA}

    def is_refusal(self, item: AnswerItem) -> bool:
        return self.ask(self._prompt("refusal", question=item.question, answer=item.answer))

    def _prompt(self, kind: str, **fields: str) -> str:
        return PROMPTS[kind].format(domain=self.domain_name, **fields)

    # --- one YES/NO question -------------------------------------------------------------------
    def cache_key(self, prompt: str) -> str:
        payload = json.dumps([self.protocol, self.model, self.max_tokens, prompt], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def ask(self, prompt: str) -> bool:
        key = self.cache_key(prompt)
        path = self.cache_dir / key[:2] / f"{key}.json"
        if path.is_file():
            reply = json.loads(path.read_text(encoding="utf-8"))["reply"]
        else:
            reply = self._request(prompt, key)
            with atomic_open(path, "w", encoding="utf-8") as f:
                json.dump({"protocol": self.protocol, "model": self.model, "prompt": prompt, "reply": reply}, f)
        return _yes_no(reply, key, prompt)

    def _request(self, prompt: str, key: str) -> str:
        import requests

        api_key = os.environ.get(self.api_key_env)
        if not api_key:
            raise JudgeError(f"judge request {key[:12]}: environment variable {self.api_key_env} (the API key) is "
                             "not set")
        url, headers, body = self._http_request(prompt, api_key)
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            self.requests_made += 1
            try:
                response = self.session.post(url, headers=headers, json=body, timeout=self.timeout_s)
            except (requests.Timeout, requests.ConnectionError) as exc:
                last = f"{type(exc).__name__}"
                retry_after = None
            else:
                if response.status_code == 200:
                    return self._reply_text(response, key, prompt, api_key)
                last = f"HTTP {response.status_code}: {_redact(response.text[:200], api_key)}"
                if response.status_code != 429 and response.status_code < 500:
                    raise JudgeError(f"judge request {key[:12]} ({_start(prompt)}) failed: {last}")
                retry_after = _retry_after(response)
            if attempt < self.max_retries:
                delay = retry_after if retry_after is not None else min(
                    self.max_backoff_s, self.backoff_s * 2 ** attempt) * (1 + 0.1 * self._jitter.random())
                log.warning("judge request %s: %s; retrying in %.1f s", key[:12], last, delay)
                self.sleep(delay)
        raise JudgeError(f"judge request {key[:12]} ({_start(prompt)}) failed after {self.max_retries + 1} "
                         f"attempts: {last}")

    def _http_request(self, prompt: str, api_key: str) -> tuple[str, dict, dict]:
        messages = [{"role": "user", "content": prompt}]
        if self.protocol == "openai":
            return (f"{self.base_url}/chat/completions", {"Authorization": f"Bearer {api_key}"},
                    {"model": self.model, "messages": messages, "max_tokens": self.max_tokens, "temperature": 0})
        return (f"{self.base_url}/v1/messages", {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION},
                {"model": self.model, "messages": messages, "max_tokens": self.max_tokens, "temperature": 0})

    def _reply_text(self, response: Any, key: str, prompt: str, api_key: str) -> str:
        try:
            data = response.json()
            if self.protocol == "openai":
                text = data["choices"][0]["message"]["content"]
            else:
                text = "".join(block["text"] for block in data["content"] if block.get("type") == "text")
            if not isinstance(text, str):
                raise TypeError("reply text is not a string")
            return text
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeError(f"judge request {key[:12]} ({_start(prompt)}): malformed {self.protocol} reply "
                             f"({type(exc).__name__}: {exc}): {_redact(response.text[:200], api_key)}") from None


def _yes_no(reply: str, key: str, prompt: str) -> bool:
    word = reply.strip().split(maxsplit=1)[0].strip(".,!:;*\"'").upper() if reply.strip() else ""
    if word in ("YES", "NO"):
        return word == "YES"
    raise JudgeError(f"judge request {key[:12]} ({_start(prompt)}): the reply {reply[:80]!r} is neither YES nor NO")


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text


def _start(prompt: str) -> str:
    return repr(" ".join(prompt.split())[:60] + "…")


def _highlight(text: str, spans: tuple[tuple[int, int], ...]) -> str:
    out, pos = [], 0
    for s, e in sorted(spans):
        out += [text[pos:s], "<<", text[s:e], ">>"]
        pos = e
    out.append(text[pos:])
    return "".join(out)


def make_http_judge(settings: dict[str, Any], **overrides: Any) -> HttpJudge:
    """An :class:`HttpJudge` from the config section ``judge.http``."""
    fields = {k: v for k, v in settings.items()}
    fields.update(overrides)
    return HttpJudge(**fields)
