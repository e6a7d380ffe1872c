import numpy as np

from inbedder_retrieval import InBedder
from inbedder_retrieval.cache import EmbeddingCache, encode_cached
from inbedder_retrieval.index import InstructionIndex


def test_cache_round_trip_and_keys(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    vectors = np.arange(6, dtype="float32").reshape(2, 3)
    cache.put("fp", "Q?", ["a", "b"], vectors)
    got = cache.get("fp", "Q?", ["b", "x", "a"])
    np.testing.assert_array_equal(got[0], vectors[1])
    assert got[1] is None
    np.testing.assert_array_equal(got[2], vectors[0])
    assert cache.get("other-model", "Q?", ["a"]) == [None]
    assert cache.get("fp", "Other?", ["a"]) == [None]
    assert len(cache) == 2


def test_rebuilding_an_index_reuses_cached_vectors(tmp_path, tiny_model_dir, monkeypatch):
    model = InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    texts = ["first text", "second text", "third text"]
    with InstructionIndex.create(tmp_path / "a", model, instructions=["Q?"], cache=cache) as index:
        index.add(texts)
    calls = []
    original, original_many = model.encode, model.encode_many
    monkeypatch.setattr(model, "encode", lambda t, *a, **k: calls.append(list(t)) or original(t, *a, **k))
    monkeypatch.setattr(model, "encode_many", lambda t, *a, **k: calls.append(list(t)) or original_many(t, *a, **k))
    with InstructionIndex.create(tmp_path / "b", model, instructions=["Q?"], cache=cache) as index:
        index.add(texts + ["new text"])
        assert index.search("first text", "Q?", k=1)[0].text == "first text"
    assert calls == [["new text"], ["first text"]]  # only the new document, then the query
    np.testing.assert_allclose(encode_cached(model, texts, "Q?", cache), original(texts, "Q?"), atol=1e-6)
