"""The explorer page in a real headless browser: Playwright driving Debian's ``chromium``
(Playwright cannot download its own browsers here). Screenshots go to
``$INBEDDER_TEST_ARTIFACTS`` (default ``test-artifacts/``) for a reviewer to look at."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from inbedder_retrieval import InBedder, InstructionIndex  # noqa: E402
from inbedder_retrieval.server.app import create_app  # noqa: E402
from inbedder_retrieval.server.config import ServerConfig  # noqa: E402
from inbedder_retrieval.server.service import Service  # noqa: E402

from test_server import DOCS, FEEL, TOPIC, running  # noqa: E402

pytestmark = pytest.mark.enable_socket

CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
ARTIFACTS = Path(os.environ.get("INBEDDER_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


def serve_index(model: InBedder, path: Path, documents: list[dict], instructions: list[str], **config):
    with InstructionIndex.create(path, model, instructions=instructions) as index:
        index.add([d["text"] for d in documents], ids=[d["id"] for d in documents],
                  metadatas=[d.get("metadata", {}) for d in documents])
    service = Service.from_objects([model], {path.name: InstructionIndex.open(path, model)})
    return running(create_app(service, ServerConfig(**config)))


def explore(browser, base: str, query: str, instructions: list[str], shots: str, key: str | None = None,
            cluster_k: int | None = 2, sample: int = 60) -> dict:
    """Search and cluster through the page like a user; returns what the page shows."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(base + "/")
    if key is not None:
        page.wait_for_selector("#status.error")  # no key yet: the page says so (after a 401)
        assert "API key" in page.text_content("#status")
        errors.clear()
        page.fill("#key", key)
        page.dispatch_event("#key", "change")
    page.wait_for_function("document.querySelectorAll('#index option').length > 0")
    page.fill("#query", query)
    page.click("#search-form button[type=submit]")
    page.wait_for_function(f"document.querySelectorAll('#columns .column').length === {len(instructions)}",
                           timeout=120_000)
    columns = page.eval_on_selector_all(
        "#columns .column", "cols => cols.map(c => ({title: c.querySelector('h2').textContent, "
                            "hits: [...c.querySelectorAll('.hit')].map(h => h.querySelector('.meta').textContent.split(' ')[0])}))")
    page.screenshot(path=str(ARTIFACTS / f"{shots}-search.png"), full_page=True)
    page.click("#tab-cluster")
    if cluster_k is not None:
        page.fill("#cluster-k", str(cluster_k))
    page.fill("#cluster-sample", str(sample))
    page.click("#cluster-form button[type=submit]")
    page.wait_for_selector("#explanations .cluster", timeout=600_000)
    clusters = page.eval_on_selector_all("#explanations .cluster", "cards => cards.map(c => c.textContent)")
    points = page.eval_on_selector_all("#scatter circle", "dots => dots.map(d => d.getAttribute('fill'))")
    page.screenshot(path=str(ARTIFACTS / f"{shots}-clusters.png"), full_page=True)
    page.close()
    assert not errors, errors
    return {"columns": columns, "clusters": clusters, "points": points}


def test_explorer_shows_every_instruction_and_clusters(browser, tiny_model_dir, tmp_path):
    pytest.importorskip("sklearn")
    model = InBedder.from_pretrained(tiny_model_dir("llama"))
    query = "cold food, rude staff"
    with serve_index(model, tmp_path / "reviews", DOCS, [FEEL, TOPIC], api_key="page-key") as base:
        shown = explore(browser, base, query, [FEEL, TOPIC], "tiny", key="page-key", cluster_k=2)
        for column, instruction in zip(shown["columns"], [FEEL, TOPIC]):
            assert column["title"] == instruction
            expected = httpx.post(f"{base}/v1/indexes/reviews/search", headers={"Authorization": "Bearer page-key"},
                                  json={"query": query, "instruction": instruction, "k": 5}).json()["hits"]
            assert column["hits"] == [hit["id"] for hit in expected]
    assert len(shown["clusters"]) == 2 and len(shown["points"]) == len(DOCS)
    assert len(set(shown["points"])) == 2  # one colour per cluster


@pytest.mark.slow
def test_explorer_on_the_default_model(browser, default_model, tmp_path):
    """Real results for the screenshots: shipped support messages under three instructions."""
    pytest.importorskip("sklearn")
    from inbedder_retrieval.demo import DEMO_INSTRUCTIONS
    from inbedder_retrieval.samples import load_sample

    records = load_sample("support_messages")[:48]
    documents = [{"id": r["id"], "text": r["text"], "metadata": {k: v for k, v in r.items() if k not in ("id", "text")}}
                 for r in records]
    instructions = list(DEMO_INSTRUCTIONS)
    with serve_index(default_model, tmp_path / "support", documents, instructions) as base:
        shown = explore(browser, base, "I was charged twice this month", instructions, "default-model",
                        cluster_k=None, sample=48)
    assert [column["title"] for column in shown["columns"]] == instructions
    assert all(len(column["hits"]) == 5 for column in shown["columns"])
    assert len(shown["points"]) == 48 and len(shown["clusters"]) >= 2
