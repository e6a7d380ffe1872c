import numpy as np
import pytest

from inbedder_retrieval import InBedder
from inbedder_retrieval.cli import main
from inbedder_retrieval.evaluation import evaluate, harmonic_mean, markdown_table, triplet_accuracy, v_measure
from inbedder_retrieval.evaluation import baselines


def test_metrics_on_constructed_vectors():
    topic = ["a", "a", "b", "b"] * 3
    mood = ["x", "y"] * 6
    by_topic = np.array([[1.0, 0.0] if t == "a" else [0.0, 1.0] for t in topic]) + 0.01 * np.arange(12)[:, None]
    assert triplet_accuracy(by_topic, topic, mood) == 1.0
    assert triplet_accuracy(by_topic, mood, topic) < 0.5
    assert v_measure(by_topic, topic) == pytest.approx(1.0)
    assert harmonic_mean([1.0, 0.5]) == pytest.approx(2 / 3) and harmonic_mean([0.0, 1.0]) == 0.0


def test_evaluate_and_baselines_on_a_tiny_model(tiny_model_dir):
    model = InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")
    records = [{"text": f"text {i} about {t} feeling {m}", "topic": t, "mood": m}
               for i, (t, m) in enumerate([("food", "good"), ("food", "bad"), ("tech", "good"), ("tech", "bad")] * 3)]
    instructions = {"topic": "What topic?", "mood": "What mood?"}
    rows = [evaluate(name, embed, "tiny", records, instructions) for name, embed in
            {"inbedder": baselines.inbedder(model), "raw": baselines.raw_language_model(model)}.items()]
    assert all(set(row.triplets) == {"topic", "mood"} and 0 <= row.v_measure_hm <= 1 for row in rows)
    raw = baselines.raw_language_model(model)
    np.testing.assert_allclose(raw(["a b"], "Q1?"), raw(["a b"], "Q2?"))  # the raw LM ignores the instruction
    assert "| inbedder | tiny |" in markdown_table(rows)


def test_cli_eval_rejects_unknown_fixture(capsys):
    assert main(["eval", "--fixture", "nope"]) == 2
    assert "unknown fixture 'nope'" in capsys.readouterr().err


def test_retrieval_metrics():
    from inbedder_retrieval.evaluation import ndcg_at_k, recall_at_k

    assert recall_at_k(["a", "x", "b"], {"a", "b"}, 3) == 1.0
    assert recall_at_k(["x", "y", "a"], {"a", "b", "c", "d"}, 2) == 0.0
    assert ndcg_at_k(["a", "b"], {"a", "b"}, 2) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "a"], {"a"}, 2) == pytest.approx(1 / np.log2(3))
    with pytest.raises(ValueError):
        recall_at_k(["a"], set(), 1)


def test_aspect_retrieval_over_an_index(tiny_model_dir, tmp_path):
    from inbedder_retrieval.evaluation import EmbedderSearch, aspect_retrieval
    from inbedder_retrieval.index import InstructionIndex

    model = InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")
    records = [{"id": f"d{i}", "text": f"text {i} about {t}", "topic": t} for i, t in enumerate(["food", "tech"] * 4)]
    with InstructionIndex.create(tmp_path / "idx", model, instructions=["What topic?"]) as index:
        index.add([r["text"] for r in records], ids=[r["id"] for r in records])
        scores = aspect_retrieval(index, records, {"topic": "What topic?"}, k=3)
        hits = index.search("text 3 about tech", "What topic?", k=5)
    assert set(scores["topic"]) == {"recall@3", "ndcg@3"} and 0 <= scores["topic"]["ndcg@3"] <= 1
    # the baselines' exact search gives the index's ranking and scores for the same embedder
    exact = EmbedderSearch(baselines.inbedder(model), records)
    found = exact.search("text 3 about tech", "What topic?", k=5)
    assert [h.id for h in found] == [h.id for h in hits]
    np.testing.assert_allclose([h.score for h in found], [h.score for h in hits], atol=1e-5)
    assert aspect_retrieval(exact, records, {"topic": "What topic?"}, k=3)["topic"] == pytest.approx(scores["topic"])


def test_shipped_instruction_sets_and_sts_pairs():
    from inbedder_retrieval.evaluation import load_instruction_sets
    from inbedder_retrieval.samples import load_sample

    sets = load_instruction_sets()
    assert set(sets) == {"two_aspects/topic", "two_aspects/sentiment", "support_messages/product", "support_messages/mood"}
    assert all(len(kinds[kind]) == 10 for kinds in sets.values() for kind in ("correct", "implicit", "incorrect"))
    pairs = load_sample("instructed_sts")
    assert len(pairs) == 120 and all(0 <= pair["score"] <= 5 for pair in pairs)


def test_robustness_and_sts_on_a_tiny_model(tiny_model_dir):
    from inbedder_retrieval.evaluation import instructed_sts, robustness

    model = InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")
    texts = [f"text {i} about {t}" for i, t in enumerate(["food", "tech", "home"] * 3)]
    labels = ["food", "tech", "home"] * 3
    sets = {"correct": ["What topic?", "Which subject?"], "implicit": ["What is it?"], "incorrect": ["How do they feel?"]}
    result = robustness(model.encode_many, texts, labels, sets)
    assert result["min(correct) - max(incorrect)"] == result["correct min"] - result["incorrect max"]
    pairs = [{"text1": "a b", "text2": "a c", "instruction": "Q?", "score": 4.0},
             {"text1": "a b", "text2": "x y", "instruction": "Q?", "score": 1.0},
             {"text1": "c d", "text2": "c e", "instruction": "R?", "score": 3.0}]
    assert -1.0 <= instructed_sts(model.encode, pairs) <= 1.0
    # a constant "embedder" cannot rank pairs
    assert np.isnan(instructed_sts(lambda texts, q: np.ones((len(texts), 3)), pairs))
