"""``inbedder serve``: the HTTP API against real clients (openai, LangChain, httpx) on a
loopback port the tests pick, with a tiny model for exact vectors."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402
import uvicorn  # noqa: E402

from inbedder_retrieval import DEFAULT_INSTRUCTION, InBedder, InstructionIndex  # noqa: E402
from inbedder_retrieval.cli import build_parser  # noqa: E402
from inbedder_retrieval.server.app import create_app  # noqa: E402
from inbedder_retrieval.server.config import ServerConfig  # noqa: E402
from inbedder_retrieval.server.service import Service  # noqa: E402

# langchain-tests brings pytest-socket: these tests need loopback sockets even under --disable-socket
pytestmark = pytest.mark.enable_socket

FEEL = "How does the customer feel?"
TOPIC = "What is the topic of this text?"
DOCS = [
    {"id": "a", "text": "The pasta was cold and the waiter ignored us.", "metadata": {"mood": "angry", "stars": 1}},
    {"id": "b", "text": "My laptop battery lasts all day, I love it.", "metadata": {"mood": "happy", "stars": 5}},
    {"id": "c", "text": "Which product is discussed here?", "metadata": {"mood": "neutral", "stars": 3}},
    {"id": "d", "text": "The waiter was lovely and the soup was hot.", "metadata": {"mood": "happy", "stars": 4}},
]


@contextmanager
def running(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir) -> InBedder:
    return InBedder.from_pretrained(tiny_model_dir("llama"))


@pytest.fixture(scope="module")
def index_path(tiny, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("served") / "reviews"
    with InstructionIndex.create(path, tiny, instructions=[FEEL, TOPIC]) as index:
        index.add([d["text"] for d in DOCS], ids=[d["id"] for d in DOCS], metadatas=[d["metadata"] for d in DOCS])
    return path


@pytest.fixture(scope="module")
def server(tiny, index_path) -> Iterator[tuple[str, Service]]:
    """One server for the module: the tiny model and the ``reviews`` index (sharing it)."""
    index = InstructionIndex.open(index_path, tiny)
    service = Service.from_objects([tiny], {"reviews": index}, max_wait=0.02)
    with running(create_app(service, ServerConfig(max_texts=8, max_chars=200, max_body_bytes=20_000))) as url:
        yield url, service


@pytest.fixture
def url(server) -> str:
    return server[0]


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value in Prometheus text (sum over samples matching ``labels``)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


# -- clients -------------------------------------------------------------------------------
def test_openai_client_float_and_base64(url, tiny):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    texts = [d["text"] for d in DOCS]
    expected = tiny.encode(texts, FEEL)
    for encoding in ("float", "base64"):
        response = client.embeddings.create(model=tiny.name, input=texts, encoding_format=encoding,
                                            extra_body={"instruction": FEEL})
        got = np.array([item.embedding for item in response.data], dtype="float32") if encoding == "float" else \
            np.stack([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in response.data])
        np.testing.assert_allclose(got, expected, atol=1e-5)
        prompts = tiny.backend.build_prompts(texts, FEEL)
        assert response.usage.prompt_tokens == sum(tiny.backend.token_lengths(prompts)) > len(texts)
    # the client's own default (base64, decoded by the client) and the server's default instruction
    single = client.embeddings.create(model=tiny.name, input=texts[0])
    np.testing.assert_allclose(single.data[0].embedding, tiny.encode(texts[0], DEFAULT_INSTRUCTION), atol=1e-5)


def test_langchain_openai_embeddings(url, tiny):
    lc = pytest.importorskip("langchain_openai")
    texts = [d["text"] for d in DOCS]
    plain = lc.OpenAIEmbeddings(base_url=f"{url}/v1", api_key="unused", model=tiny.name,
                                check_embedding_ctx_length=False, max_retries=0)
    np.testing.assert_allclose(plain.embed_documents(texts), tiny.encode(texts, DEFAULT_INSTRUCTION), atol=1e-5)
    asked = lc.OpenAIEmbeddings(base_url=f"{url}/v1", api_key="unused", model=tiny.name, max_retries=0,
                                check_embedding_ctx_length=False, model_kwargs={"extra_body": {"instruction": TOPIC}})
    np.testing.assert_allclose(asked.embed_query(texts[1]), tiny.encode(texts[1], TOPIC), atol=1e-5)


def test_our_integrations_embed_on_the_server(url, tiny):
    """``InBedderEmbeddings(base_url=...)`` (LangChain) and ``InBedderEmbedding(base_url=...)``
    (LlamaIndex) load no model and give the server's vectors."""
    texts = [d["text"] for d in DOCS]
    langchain = pytest.importorskip("langchain_inbedder")
    remote = langchain.InBedderEmbeddings(base_url=url, embed_instruction=FEEL, query_instruction=TOPIC)
    np.testing.assert_allclose(remote.embed_documents(texts), tiny.encode(texts, FEEL), atol=1e-5)
    np.testing.assert_allclose(remote.embed_query(texts[0]), tiny.encode(texts[0], TOPIC), atol=1e-5)
    assert remote._client is None  # nothing loaded here
    with pytest.raises(ValueError, match="normalize"):
        langchain.InBedderEmbeddings(base_url=url, normalize=False)
    llama = pytest.importorskip("llama_index.embeddings.inbedder")
    embed_model = llama.InBedderEmbedding(base_url=url, text_instruction=FEEL, query_instruction=TOPIC)
    np.testing.assert_allclose(embed_model.get_text_embedding_batch(texts), tiny.encode(texts, FEEL), atol=1e-5)
    np.testing.assert_allclose(embed_model.get_query_embedding(texts[1]), tiny.encode(texts[1], TOPIC), atol=1e-5)
    with pytest.raises(ValueError, match="device"):
        llama.InBedderEmbedding(base_url=url, device="cpu")


def test_answer_endpoint(url, tiny):
    response = httpx.post(f"{url}/v1/answer", json={"input": DOCS[0]["text"], "instruction": FEEL,
                                                    "max_new_tokens": 3})
    assert response.status_code == 200, response.text
    assert response.json()["answers"] == tiny.answer([DOCS[0]["text"]], FEEL, max_new_tokens=3)


# -- dynamic batching ------------------------------------------------------------------------
def test_concurrent_requests_are_batched_and_exact(url, tiny):
    """Concurrent one-text requests under two instructions get the vectors of one-by-one
    ``encode``, and the metrics show merged batches."""
    texts = [f"{d['text']} #{n}" for n in range(6) for d in DOCS]
    jobs = [(text, FEEL if n % 2 else TOPIC) for n, text in enumerate(texts)]
    before = httpx.get(f"{url}/metrics").text

    async def send_all() -> list[list[float]]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            async def one(text: str, instruction: str) -> list[float]:
                response = await client.post("/v1/embeddings", json={"input": text, "instruction": instruction})
                assert response.status_code == 200, response.text
                return response.json()["data"][0]["embedding"]
            return await asyncio.gather(*(one(text, q) for text, q in jobs))

    vectors = asyncio.run(send_all())
    for (text, instruction), vector in zip(jobs, vectors):
        np.testing.assert_allclose(vector, tiny.encode(text, instruction), atol=1e-5)
    after = httpx.get(f"{url}/metrics").text
    name, model = "inbedder_batch_requests", tiny.name
    batches = metric(after, f"{name}_count", model=model) - metric(before, f"{name}_count", model=model)
    singles = metric(after, f"{name}_bucket", model=model, le="1.0") - metric(before, f"{name}_bucket", model=model,
                                                                               le="1.0")
    assert batches < len(jobs) and singles < batches, (batches, singles)  # some batches merged > 1 request
    texts_done = metric(after, "inbedder_texts_embedded_total", model=model) - metric(
        before, "inbedder_texts_embedded_total", model=model)
    assert texts_done == len(jobs)
    assert metric(after, "inbedder_requests_total", route="/v1/embeddings", status="200") >= len(jobs)
    assert "inbedder_request_seconds_bucket" in after and "inbedder_queue_depth" in after


def test_batching_off_gives_one_request_per_batch(tiny):
    service = Service.from_objects([tiny], batching=False)
    with running(create_app(service)) as base:
        async def send() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                await asyncio.gather(*(client.post("/v1/embeddings", json={"input": f"text {n}"}) for n in range(8)))
        asyncio.run(send())
        text = httpx.get(f"{base}/metrics").text
    count = metric(text, "inbedder_batch_requests_count")
    assert count == 8 and metric(text, "inbedder_batch_requests_bucket", le="1.0") == 8


def test_batcher_merges_mixed_instructions_and_survives_failures(tiny):
    """Requests for the same texts under two instructions share one ``encode_many``;
    another instruction's request joins the same batch; a failing job fails alone."""
    from inbedder_retrieval.server.batching import Batcher
    from inbedder_retrieval.server.metrics import ServerMetrics

    metrics = ServerMetrics()
    batcher = Batcher(tiny, metrics, max_wait=0.5)
    shared = [d["text"] for d in DOCS[:3]]
    calls: list[tuple[int, int]] = []
    original = tiny.encode_many
    tiny.encode_many = lambda texts, instructions, **kw: calls.append((len(texts), len(instructions))) or original(
        texts, instructions, **kw)

    async def scenario():
        results = await asyncio.gather(batcher.embed(shared, FEEL), batcher.embed(shared, TOPIC),
                                       batcher.embed([DOCS[3]["text"]], FEEL))
        with pytest.raises(ZeroDivisionError):
            await batcher.run(lambda: 1 / 0)
        return results, await batcher.embed([DOCS[3]["text"]], TOPIC)

    try:
        (feel, topic, other), after = asyncio.run(scenario())
    finally:
        del tiny.encode_many
        batcher.close()
    np.testing.assert_allclose(feel.vectors, tiny.encode(shared, FEEL), atol=1e-5)
    np.testing.assert_allclose(topic.vectors, tiny.encode(shared, TOPIC), atol=1e-5)
    np.testing.assert_allclose(other.vectors, tiny.encode([DOCS[3]["text"]], FEEL), atol=1e-5)
    np.testing.assert_allclose(after.vectors, tiny.encode([DOCS[3]["text"]], TOPIC), atol=1e-5)
    assert calls == [(3, 2)]
    text = metrics.render().decode()
    assert metric(text, "inbedder_batch_requests_count") == 2  # the three merged, then the last one
    assert metric(text, "inbedder_batch_requests_sum") == 4


# -- indexes ----------------------------------------------------------------------------------
def test_search_add_delete_through_http(url, tiny, index_path):
    listing = httpx.get(f"{url}/v1/indexes").json()["indexes"]
    assert [item["name"] for item in listing] == ["reviews"]
    assert {i["instruction"] for i in listing[0]["instructions"]} == {FEEL, TOPIC}

    query = {"query": "cold food, rude staff", "instruction": FEEL, "k": 3}
    hits = httpx.post(f"{url}/v1/indexes/reviews/search", json=query).json()["hits"]
    with InstructionIndex.open(index_path, tiny) as direct:
        expected = direct.search(query["query"], FEEL, k=3)
    assert [h["id"] for h in hits] == [h.id for h in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in expected], atol=1e-5)

    filtered = httpx.post(f"{url}/v1/indexes/reviews/search",
                          json={**query, "filter": {"stars": {"$gte": 4}}}).json()["hits"]
    assert filtered and {h["id"] for h in filtered} <= {"b", "d"}

    added = httpx.post(f"{url}/v1/indexes/reviews/documents", json={"documents": [
        {"id": "e", "text": "Refund me now, this is the third broken kettle.", "metadata": {"mood": "angry"}}]})
    assert added.status_code == 200, added.text
    assert added.json() == {"ids": ["e"], "documents": 5}
    top = httpx.post(f"{url}/v1/indexes/reviews/search",
                     json={"query": "Refund me now, this is the third broken kettle.", "instruction": TOPIC, "k": 1})
    assert top.json()["hits"][0]["id"] == "e"

    deleted = httpx.request("DELETE", f"{url}/v1/indexes/reviews/documents", json={"ids": ["e", "zzz"]})
    assert deleted.json() == {"deleted": 1, "documents": 4}
    info = httpx.get(f"{url}/v1/indexes/reviews").json()
    assert info["documents"] == 4 and info["model"]["fingerprint"] == tiny.fingerprint


def test_add_instruction_through_http(tiny, tmp_path):
    path = tmp_path / "grow"
    with InstructionIndex.create(path, tiny, instructions=[FEEL]) as index:
        index.add([d["text"] for d in DOCS], ids=[d["id"] for d in DOCS])
    service = Service.from_objects([tiny], {"grow": InstructionIndex.open(path, tiny)})
    with running(create_app(service)) as base:
        response = httpx.post(f"{base}/v1/indexes/grow/instructions", json={"instruction": TOPIC})
        assert response.status_code == 201, response.text
        assert [i["instruction"] for i in response.json()["instructions"]] == [FEEL, TOPIC]
        hits = httpx.post(f"{base}/v1/indexes/grow/search", json={"query": DOCS[2]["text"], "instruction": TOPIC,
                                                                  "k": 1}).json()["hits"]
        assert hits[0]["id"] == "c"
    with InstructionIndex.open(path, tiny) as reopened:
        np.testing.assert_allclose(reopened.get_vectors(["a"], TOPIC)["a"], tiny.encode(DOCS[0]["text"], TOPIC),
                                   atol=1e-5)


def test_indexes_share_the_model_when_the_manifest_agrees(tiny_model_dir, tmp_path):
    """``Service.load``: two indexes built with the served model share it; one built with
    another model opens with its own."""
    llama, gpt2 = (InBedder.from_pretrained(tiny_model_dir(kind)) for kind in ("llama", "gpt2"))
    for name, model in (("one", llama), ("two", llama), ("other", gpt2)):
        InstructionIndex.create(tmp_path / name, model, instructions=[FEEL]).close()
    service = Service.load(str(tiny_model_dir("llama")), [str(tmp_path / "one"), f"second={tmp_path / 'two'}",
                                                          str(tmp_path / "other")])
    try:
        assert list(service.indexes) == ["one", "second", "other"]
        assert service.indexes["one"].batcher is service.indexes["second"].batcher
        assert service.indexes["one"].index.model is service.batchers[service.default_model].model
        assert service.indexes["other"].batcher is not service.indexes["one"].batcher
        assert service.indexes["other"].index.model.fingerprint == gpt2.fingerprint
        assert len(service.batchers) == 2
    finally:
        service.close()


def test_client_and_search_server_mode(url, tiny, capsys):
    """``InBedderClient`` and ``inbedder search --server URL``: the server's answers, no model load."""
    from inbedder_retrieval.cli import main
    from inbedder_retrieval.server.client import InBedderClient, ServerError

    with InBedderClient(url) as client:
        np.testing.assert_allclose(client.embed([DOCS[0]["text"]], FEEL), tiny.encode([DOCS[0]["text"]], FEEL), atol=1e-5)
        hits = client.search("reviews", "cold food", FEEL, k=2, filter={"mood": {"$in": ["angry", "happy"]}})
        with pytest.raises(ServerError, match="known: reviews"):
            client.search("nope", "cold food", FEEL)
    expected = httpx.post(f"{url}/v1/indexes/reviews/search", json={"query": "cold food", "instruction": FEEL, "k": 2,
                                                                     "filter": {"mood": {"$in": ["angry", "happy"]}}})
    assert [h.id for h in hits] == [h["id"] for h in expected.json()["hits"]]
    assert main(["search", "reviews", "cold food", "-q", FEEL, "-k", "2", "--server", url, "--json",
                 "--filter", '{"mood": {"$in": ["angry", "happy"]}}']) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["id"] for row in printed] == [h.id for h in hits]
    assert main(["search", "reviews", "cold food", "-q", "Who?", "--server", url]) == 2
    assert "is not an instruction" in capsys.readouterr().err


# -- bad input: clear errors, and the server keeps serving --------------------------------------
@pytest.mark.parametrize(("request_kwargs", "status", "needle"), [
    ({"url": "/v1/indexes/nope/search", "json": {"query": "x", "instruction": FEEL}}, 404, "reviews"),
    ({"url": "/v1/indexes/reviews/search", "json": {"query": "x", "instruction": "Who?"}}, 404, FEEL),
    ({"url": "/v1/embeddings", "json": {"input": "x", "model": "gpt-9"}}, 404, "known"),
    ({"url": "/v1/embeddings", "content": b'{"input": "x",', "headers": {"content-type": "application/json"}},
     400, "not valid JSON"),
    ({"url": "/v1/indexes/reviews/search", "json": {"query": "x", "instruction": FEEL, "filter": {"$xor": []}}},
     400, "$xor"),
    ({"url": "/v1/indexes/reviews/search", "json": {"query": "x", "instruction": FEEL, "filter": [1, 2]}},
     422, "filter"),
    ({"url": "/v1/embeddings", "json": {"input": ["a"] * 9}}, 413, "max_texts_per_request"),
    ({"url": "/v1/embeddings", "json": {"input": ["a", "b" * 201]}}, 413, "max_chars_per_text"),
    ({"url": "/v1/embeddings", "json": {"input": "x" * 30_000}}, 413, "max_body_bytes"),
    ({"url": "/v1/embeddings", "json": {"input": "x", "instructions": FEEL}}, 422, "instructions"),
    ({"url": "/v1/embeddings", "json": {"input": [1, 2, 3]}}, 422, "input"),
    ({"url": "/v1/embeddings", "json": {"input": "   "}}, 422, "blank"),
    ({"url": "/v1/embeddings", "json": {"input": []}}, 422, "empty"),
    ({"url": "/v1/indexes/reviews/search", "json": {"query": "x", "instruction": FEEL, "k": 0}}, 422, "k"),
    ({"url": "/v1/indexes/reviews/documents", "json": {"documents": [{"id": "", "text": "x"}]}}, 422, "id"),
])
def test_bad_requests_get_clear_json_errors(url, request_kwargs, status, needle):
    with httpx.Client(base_url=url) as client:
        response = client.request("POST", **request_kwargs)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert needle in json.dumps(error), error
        assert client.get("/health").json() == {"status": "ok"}
        assert client.post("/v1/embeddings", json={"input": "still serving"}).status_code == 200


def test_unknown_index_lists_the_known_ones(url):
    error = httpx.get(f"{url}/v1/indexes/missing").json()["error"]
    assert error["known"] == ["reviews"] and "missing" in error["message"]


# -- safety ----------------------------------------------------------------------------------
def test_api_key_is_required_and_never_logged(tiny, caplog):
    key = "s3cret-key-for-the-test"
    service = Service.from_objects([tiny])
    caplog.set_level(logging.DEBUG)
    with running(create_app(service, ServerConfig(api_key=key))) as base:
        assert httpx.get(f"{base}/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
            for method, route in (("POST", "/v1/embeddings"), ("GET", "/metrics"), ("GET", "/v1/indexes"),
                                  ("GET", "/docs"), ("GET", "/openapi.json")):
                response = httpx.request(method, f"{base}{route}", json={"input": "x"}, headers=headers)
                assert response.status_code == 401, (route, headers)
                assert key not in response.text
        good = {"Authorization": f"Bearer {key}"}
        assert httpx.post(f"{base}/v1/embeddings", json={"input": "x"}, headers=good).status_code == 200
        assert httpx.get(f"{base}/docs", headers=good).status_code == 200
        openai = pytest.importorskip("openai")
        assert openai.OpenAI(base_url=f"{base}/v1", api_key=key).embeddings.create(model=tiny.name, input="x").data
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{base}/v1", api_key="nope", max_retries=0).embeddings.create(model=tiny.name,
                                                                                                  input="x")
    assert key not in caplog.text


def test_cors_is_off_unless_configured(url, tiny):
    preflight = {"Origin": "http://example.org", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in httpx.options(f"{url}/v1/embeddings", headers=preflight).headers
    assert "access-control-allow-origin" not in httpx.get(f"{url}/health", headers=preflight).headers
    service = Service.from_objects([tiny])
    with running(create_app(service, ServerConfig(cors_origins=("http://example.org",), api_key="k"))) as base:
        response = httpx.options(f"{base}/v1/embeddings", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "http://example.org"
        other = httpx.options(f"{base}/v1/embeddings", headers={**preflight, "Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_serve_binds_loopback_by_default():
    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.api_key is None and not args.cors_origin and not args.no_batching


def test_help_does_not_import_the_server_dependencies():
    code = ("import sys; from inbedder_retrieval.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'prometheus_client') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert output.stdout.strip() == "[]"


# -- a killed server leaves the index before or after a write -------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sigkill_during_a_documents_post_leaves_the_index_whole(tiny, tmp_path):
    path = tmp_path / "killed"
    with InstructionIndex.create(path, tiny, instructions=[FEEL, TOPIC]) as index:
        index.add([d["text"] for d in DOCS], ids=[d["id"] for d in DOCS])
    batch = [{"id": f"n{n}", "text": f"Message number {n}: the order arrived late and cold."} for n in range(3000)]
    outcomes = []
    for delay in (0.2, 1.0):
        port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from inbedder_retrieval.cli import main; sys.exit(main())",
             "serve", "--index", str(path), "--port", str(port), "--max-texts", "5000", "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
                time.sleep(0.2)
            replies: list[int] = []
            sender = threading.Thread(target=_post_quietly, args=(f"{base}/v1/indexes/killed/documents", batch, replies))
            sender.start()
            time.sleep(delay)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            process.stderr.close()
        sender.join(30)
        with InstructionIndex.open(path, tiny) as reopened:
            report = reopened.verify()
            count = len(reopened)
            assert count in (len(DOCS), len(DOCS) + len(batch)), count
            assert all(n == count for n in report["instructions"].values()), report
            outcomes.append((delay, count, replies))
            reopened.delete([doc["id"] for doc in batch])  # the next round starts from before again
    assert any(not replies for _, _, replies in outcomes), outcomes  # at least one kill hit the write in flight


def _post_quietly(url: str, documents: list[dict], replies: list[int]) -> None:
    try:
        replies.append(httpx.post(url, json={"documents": documents}, timeout=60).status_code)
    except httpx.TransportError:  # the server was killed: expected
        pass


# -- explorer --------------------------------------------------------------------------------
def test_explorer_page_and_cluster_view(url):
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "explorer.js" in page.text and "http" not in page.text.replace("http-equiv", "")  # no CDN
    script = httpx.get(f"{url}/explorer.js")
    assert script.status_code == 200 and "/v1/indexes" in script.text
    pytest.importorskip("sklearn")
    result = httpx.post(f"{url}/v1/indexes/reviews/cluster", json={"instruction": FEEL, "k": 2}, timeout=120)
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["k"] == 2 and sum(c["size"] for c in body["clusters"]) == len(body["points"]) == 4
    assert all(-1 <= p["x"] <= 1 and -1 <= p["y"] <= 1 for p in body["points"])


# -- the shipped default model -------------------------------------------------------------------
@pytest.mark.slow
def test_default_model_behind_the_openai_client(default_model, tmp_path):
    openai = pytest.importorskip("openai")
    texts = ["The soup was cold and nobody came.", "Thanks, the new router works great!"]
    with InstructionIndex.create(tmp_path / "d", default_model, instructions=[FEEL]) as index:
        index.add(texts, ids=["cold", "router"])
    service = Service.from_objects([default_model], {"d": InstructionIndex.open(tmp_path / "d", default_model)})
    with running(create_app(service)) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        response = client.embeddings.create(model=default_model.name, input=texts, extra_body={"instruction": FEEL})
        np.testing.assert_allclose([d.embedding for d in response.data], default_model.encode(texts, FEEL), atol=1e-4)
        hits = httpx.post(f"{base}/v1/indexes/d/search", json={"query": "I am furious about the cold food",
                                                               "instruction": FEEL, "k": 2}, timeout=60).json()
        assert {h["id"] for h in hits["hits"]} == {"cold", "router"}
