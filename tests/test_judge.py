"""The judge interface: the HTTP judge against a local server the test starts (both protocols,
retries, malformed replies, the cache, the rate bound, the key never leaking), and the world and
provenance judges on hand-made items."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tokenfilter.judge import ActivationContext, AnswerItem, JudgeError, LatentEvidence, TextItem
from tokenfilter.judge.http import HttpJudge, RateLimiter

KEY = "sk-test-secret-0123456789"


class Server:
    """A local stand-in for an LLM endpoint: answers each POST with the next scripted reply
    (status, JSON body or raw text, headers) and records what it received."""

    def __init__(self):
        self.script: list[tuple[int, object, dict]] = []
        self.received: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("content-length", 0))
                server.received.append({"path": self.path, "headers": dict(self.headers),
                                        "body": json.loads(self.rfile.read(length))})
                status, body, headers = server.script.pop(0) if server.script else (500, "no script", {})
                payload = body if isinstance(body, str) else json.dumps(body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def openai_reply(text: str) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": text}}]}


def anthropic_reply(text: str) -> dict:
    return {"content": [{"type": "text", "text": text}], "role": "assistant"}


@pytest.fixture
def sleeps():
    return []


def judge(server: Server, tmp_path, sleeps, protocol="openai", **kwargs) -> HttpJudge:
    """A judge on a fake clock that only its own sleeps advance (recorded in ``sleeps``)."""
    base = server.url + ("/v1" if protocol == "openai" else "")
    now = [0.0]

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    return HttpJudge(protocol, "judge-model", base, "TEST_JUDGE_KEY", tmp_path / "cache", requests_per_minute=60,
                     max_retries=kwargs.pop("max_retries", 3), timeout_s=5, clock=lambda: now[0], sleep=sleep,
                     **kwargs)


ITEM = TextItem("Patients with brightitis often develop a fever.", level="sentence")


def test_openai_protocol(server, tmp_path, sleeps, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", KEY)
    server.script = [(200, openai_reply("YES"), {})]
    assert judge(server, tmp_path, sleeps).text_is_forget(ITEM) is True
    request = server.received[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["body"]["model"] == "judge-model" and "brightitis" in request["body"]["messages"][0]["content"]


def test_anthropic_protocol(server, tmp_path, sleeps, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", KEY)
    server.script = [(200, anthropic_reply("No."), {})]
    assert judge(server, tmp_path, sleeps, "anthropic").text_is_forget(ITEM) is False
    request = server.received[0]
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == KEY and request["headers"]["anthropic-version"] == "2023-06-01"
    assert request["body"]["max_tokens"] == 8


def test_a_429_then_success_is_retried_after_the_servers_delay(server, tmp_path, sleeps, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", KEY)
    server.script = [(429, {"error": "rate limited"}, {"retry-after": "2"}), (503, "busy", {}),
                     (200, openai_reply("YES"), {})]
    j = judge(server, tmp_path, sleeps)
    assert j.text_is_forget(ITEM) is True
    assert len(server.received) == 3 and j.requests_made == 3
    assert sleeps[0] == 2.0  # Retry-After honoured
    assert 2.0 <= sleeps[1] <= 2.2  # then exponential backoff: 1 s · 2^1 (+ up to 10% jitter)


def test_retries_run_out_with_a_clear_error(server, tmp_path, sleeps, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", KEY)
    server.script = [(500, f"internal error for key {KEY}", {})] * 3
    with pytest.raises(JudgeError) as info:
        judge(server, tmp_path, sleeps, max_retries=2).text_is_forget(ITEM)
    message = str(info.value)
    assert "after 3 attempts" in message and "HTTP 500" in message
    assert KEY not in message and "[redacted]" in message


def test_a_malformed_reply_is_an_error_naming_the_request(server, tmp_path, sleeps, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", KEY)
    j = judge(server, tmp_path, sleeps)
    server.script = [(200, {"unexpected": True}, {})]
    with pytest.raises(JudgeError) as info:
        j.text_is_forget(ITEM)
    key = j.cache_key(server.received[0]["body"]["messages"][0]["content"])
    assert "malformed openai reply" in str(info.value) and key[:12] in str(info.value)
    server.script = [(200, openai_reply("Perhaps"), {})]
    with pytest.raises(JudgeError, match="neither YES nor NO"):
        j.text_is_forget(TextItem("Another sentence.", level="sentence"))
    assert not list((tmp_path / "cache").rglob("*.json"))[1:]  # nothing unusable cached twice


def test_a_cache_hit_makes_no_request_and_the_cache_holds_no_key(server, tmp_path, sleeps, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", KEY)
    server.script = [(200, openai_reply("YES"), {})]
    assert judge(server, tmp_path, sleeps).text_is_forget(ITEM) is True
    second = judge(server, tmp_path, sleeps)  # a new job, same cache directory
    monkeypatch.delenv("TEST_JUDGE_KEY")  # it does not even need the key
    assert second.text_is_forget(ITEM) is True
    assert len(server.received) == 1 and second.requests_made == 0
    cached = list((tmp_path / "cache").rglob("*.json"))
    assert len(cached) == 1 and KEY not in cached[0].read_text()
    assert KEY not in repr(second)


def test_a_missing_key_names_the_variable_not_a_value(server, tmp_path, sleeps, monkeypatch):
    monkeypatch.delenv("TEST_JUDGE_KEY", raising=False)
    with pytest.raises(JudgeError, match="TEST_JUDGE_KEY"):
        judge(server, tmp_path, sleeps).text_is_forget(ITEM)
    assert server.received == []


def test_the_request_rate_is_bounded(server, tmp_path, monkeypatch):
    """With a fake clock: 5 requests at 30 per minute start at least 2 s apart."""
    monkeypatch.setenv("TEST_JUDGE_KEY", KEY)
    now = [100.0]
    starts = []

    def sleep(seconds):
        now[0] += seconds

    limiter = RateLimiter(30, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
        starts.append(now[0])
        now[0] += 0.25  # each request takes a quarter second
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(gap >= 2.0 - 1e-9 for gap in gaps) and gaps[0] == pytest.approx(2.0)
    # And inside the judge: one limiter spaces the real requests.
    server.script = [(200, openai_reply("YES"), {})] * 3
    j = HttpJudge("openai", "m", server.url, "TEST_JUDGE_KEY", tmp_path / "c2", requests_per_minute=60,
                  clock=lambda: now[0], sleep=sleep)
    t0 = now[0]
    for i in range(3):
        j.text_is_forget(TextItem(f"sentence {i}", level="sentence"))
    assert now[0] - t0 >= 2.0  # three starts at 60/min span at least two seconds


def test_answer_quality_asks_the_three_questions(server, tmp_path, sleeps, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", KEY)
    server.script = [(200, openai_reply(a), {}) for a in ("YES", "NO", "YES")]
    verdict = judge(server, tmp_path, sleeps).answer_quality(
        AnswerItem("What treats brightitis?", "Brightitis is treated with lorinib.", reference="lorinib"))
    assert verdict == {"correct": True, "relevant": False, "coherent": True}
    assert "A correct answer: lorinib" in server.received[0]["body"]["messages"][0]["content"]


# --- the world and provenance judges ------------------------------------------------------------

def test_world_judge_on_latents_and_text():
    from tokenfilter.judge.world import WorldJudge

    text = "The fox lives in the forest. Brightitis is treated with lorinib."
    forget = ((29, len(text)),)
    medical = ActivationContext(text, ((29, 39),), 5.0, forget_spans=forget)
    animal = ActivationContext(text, ((4, 7),), 4.0, forget_spans=forget)
    j = WorldJudge()
    assert j.latent_is_forget(LatentEvidence(1, (medical, medical, animal)))
    assert not j.latent_is_forget(LatentEvidence(2, (animal, animal, medical)))
    assert j.text_is_forget(TextItem(text[29:], "sentence", forget_spans=((0, len(text) - 29),)))
    assert not j.text_is_forget(TextItem(text, "document", forget_spans=((0, 5),)))
    noisy = WorldJudge(error_rate=1.0)
    assert not noisy.latent_is_forget(LatentEvidence(1, (medical,)))


def test_provenance_judge():
    from tokenfilter.judge.provenance import ProvenanceJudge

    j = ProvenanceJudge()
    ctx = [ActivationContext("x", ((0, 1),), 1.0, source_domain=d) for d in ("forget", "forget", "retain_near")]
    assert j.latent_is_forget(LatentEvidence(0, tuple(ctx)))
    assert not j.latent_is_forget(LatentEvidence(0, tuple(ctx[1:])))  # a tie is not a majority
    assert j.text_is_forget(TextItem("a", source_domain="forget"))
    with pytest.raises(JudgeError, match="cannot judge answers"):
        j.answer_quality(AnswerItem("q", "a"))
