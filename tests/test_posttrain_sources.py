"""The paper's post-training sets from local files in their published formats (paper.yaml's
capabilities.posttrain.data): the MMLU auxiliary_train CSVs (Table 3 mix), smol-smoltalk,
HealthSearchQA and Alpaca, read into the item files the capability stage tokenises."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokenfilter.errors import ConfigError
from tokenfilter.io import read_jsonl
from tokenfilter.posttrain.sources import chat_items, instruction_items, write_posttrain_sets


def _published_sets(root: Path) -> dict:
    """One small copy of each set, as the release / the hub publishes it."""
    aux = root / "mmlu_auxiliary_train"
    aux.mkdir()
    # The release CSVs have no header: question, A, B, C, D, answer letter (quotes and commas inside).
    (aux / "arc_easy.csv").write_text('"Which gas do plants take in, mostly?",oxygen,"carbon dioxide, CO2",helium,neon,B\n'
                                      "What is 2+2?,3,4,5,6,B\n")
    (aux / "boolq.csv").write_text("Is the sky green?,yes,no,,,B\n")  # two options: skipped, counted
    pq.write_table(pa.Table.from_pylist([
        {"messages": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}], "source": "x"},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"},
                      {"role": "assistant", "content": "6"}], "source": "y"},
        {"messages": [{"role": "assistant", "content": "I start."}], "source": "z"},  # not a user turn first
    ]), root / "smol-smoltalk.parquet")
    (root / "healthsearchqa.csv").write_text("id,question\n1,what causes a migraine?\n2,is a fever of 39 dangerous?\n")
    (root / "alpaca.json").write_text(json.dumps([
        {"instruction": "Name a primary colour.", "input": "", "output": "Red."},
        {"instruction": "Summarise the text.", "input": "Cats sleep a lot.", "output": "Cats nap often."}]))
    return {"instruct": {"path": str(aux)}, "chat": {"path": str(root / "smol-smoltalk.parquet")},
            "health_questions": {"path": str(root / "healthsearchqa.csv")},
            "general_instructions": {"path": str(root / "alpaca.json")}}


def test_the_published_sets_become_the_stages_item_files(tmp_path):
    data = _published_sets(tmp_path)
    out = {name: tmp_path / "items" / f"{name}.jsonl" for name in ("instruct", "chat", "refusal", "free_response")}
    counts = write_posttrain_sets(data, out)
    assert counts == {"instruct": 2, "instruct_skipped": 1, "chat": 2, "chat_skipped": 1, "health_questions": 2,
                      "general_instructions": 2}
    instruct = read_jsonl(out["instruct"])
    assert instruct[0]["choices"][1] == "carbon dioxide, CO2" and instruct[0]["completion"] == " B"
    assert instruct[0]["prompt"].startswith("Question: Which gas") and instruct[0]["prompt"].endswith("\nAnswer:")
    refusal = read_jsonl(out["refusal"])
    assert [r["refuse"] for r in refusal] == [True, True, False, False]
    assert refusal[3]["prompt"] == "Summarise the text.\n\nCats sleep a lot." and refusal[3]["response"] == "Cats nap often."
    free = read_jsonl(out["free_response"])
    assert [r["kind"] for r in free] == ["health", "health", "general", "general"] and free[2]["reference"] == "Red."


def test_the_item_files_tokenise_into_training_examples(tmp_path, tiny_world):
    from tokenfilter.posttrain.formats import write_posttrain_examples

    data = _published_sets(tmp_path)
    out = {name: tmp_path / f"{name}.jsonl" for name in ("instruct", "chat", "refusal", "free_response")}
    write_posttrain_sets(data, out)
    tokenizer = tiny_world["root"] / "tokenizer" / "tokenizer.json"
    for kind in ("instruct", "chat"):
        summary = write_posttrain_examples(kind, out[kind], tokenizer, tmp_path / f"{kind}_examples.jsonl")
        assert summary["examples"] == 2 and 0 < summary["loss_tokens"] < summary["tokens"]
    summary = write_posttrain_examples("refusal", out["refusal"], tokenizer, tmp_path / "refusal_examples.jsonl",
                                       variant="token", held_out_path=tmp_path / "held_out.jsonl")
    assert summary["held_out_health"] == 1 and summary["examples"] == 2


def test_the_hub_copy_of_mmlu_auxiliary_train_reads_too(tmp_path):
    # cais/mmlu nests each auxiliary_train record under "train", answers as indices.
    pq.write_table(pa.Table.from_pylist([{"train": {"question": "Q?", "subject": "", "choices": ["a", "b", "c", "d"],
                                                    "answer": 3}}]), tmp_path / "aux.parquet")
    items, skipped = instruction_items(tmp_path / "aux.parquet")
    assert skipped == 0 and items[0]["completion"] == " D"


def test_bad_records_name_their_file_and_line(tmp_path):
    (tmp_path / "aux.csv").write_text("Q?,a,b,c,d,E\n")
    with pytest.raises(ConfigError, match=r"aux\.csv:1: answer 'E'"):
        instruction_items(tmp_path / "aux.csv")
    (tmp_path / "chat.jsonl").write_text('{"messages": []}\n{"conversation": []}\n')
    with pytest.raises(ConfigError, match=r"chat\.jsonl:2: no field 'messages'"):
        chat_items(tmp_path / "chat.jsonl")
    with pytest.raises(ConfigError, match="no such file"):
        chat_items(tmp_path / "missing.jsonl")


# --- downloads, against local stand-ins of the MMLU archive server and the hub --------------------------

@pytest.fixture
def stand_in(tmp_path):
    """A local HTTP server playing the MMLU release server and the Hugging Face hub's file API."""
    import hashlib
    import io
    import tarfile
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, text in {"data/auxiliary_train/race.csv": "Q?,a,b,c,d,C\n",
                           "data/test/anatomy_test.csv": "Bone?,x,y,z,w,A\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    files = {"tatsu-lab/alpaca": {"data/train-00000-of-00001.parquet": b"PAR1 not really", "README.md": b"# alpaca"}}
    commit = "a" * 40

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, body: bytes, headers: dict | None = None, head: bool = False):
            self.send_response(200)
            for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _route(self, head: bool):
            path = self.path.split("?")[0]
            if path == "/data.tar":
                return self._send(archive.getvalue(), head=head)
            for repo, content in files.items():
                if path.startswith(f"/api/datasets/{repo}/tree/"):
                    listing = [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                               for p, b in content.items()]
                    return self._send(json.dumps(listing).encode(), {"Content-Type": "application/json"}, head)
                prefix = f"/datasets/{repo}/resolve/main/"
                if path.startswith(prefix) and path[len(prefix):] in content:
                    body = content[path[len(prefix):]]
                    return self._send(body, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha1(body).hexdigest()}"'},
                                      head)
            self.send_error(404)

        def do_GET(self):  # noqa: N802 (http.server's name)
            self._route(head=False)

        def do_HEAD(self):  # noqa: N802
            self._route(head=True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_downloads_fetch_the_published_files_from_their_servers(stand_in, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from tokenfilter.evaluate.downloads import download_mmlu
    from tokenfilter.posttrain.sources import download_posttrain_set

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    written = download_posttrain_set({"source": "mmlu_archive"}, tmp_path / "aux", archive_url=f"{stand_in}/data.tar")
    assert [Path(p).name for p in written] == ["race.csv"]
    assert instruction_items(tmp_path / "aux")[0][0]["completion"] == " C"
    written = download_posttrain_set({"source": "huggingface", "repo": "tatsu-lab/alpaca",
                                      "pattern": "data/train-*.parquet"}, tmp_path / "alpaca", endpoint=stand_in)
    assert [Path(p).read_bytes() for p in written] == [b"PAR1 not really"]
    with pytest.raises(ConfigError, match="names one file"):
        download_posttrain_set({"source": "huggingface", "repo": "tatsu-lab/alpaca", "pattern": "*"},
                               tmp_path / "one.parquet", endpoint=stand_in)
    download_mmlu({"mmlu_anatomy": tmp_path / "anatomy.csv"}, url=f"{stand_in}/data.tar")
    assert (tmp_path / "anatomy.csv").read_text() == "Bone?,x,y,z,w,A\n"
