import json

import numpy as np
import pytest

from inbedder_retrieval import InBedder
from inbedder_retrieval.cli import main
from inbedder_retrieval.cluster import choose_k, cluster_texts, explain
from inbedder_retrieval.samples import load_sample


def test_choose_k_finds_separated_groups():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3] * 10
    vectors = np.concatenate([centre + rng.normal(scale=0.3, size=(15, 8)) for centre in centres])
    k, scores = choose_k(vectors, range(2, 7))
    assert k == 3 and set(scores) == {2, 3, 4, 5, 6}
    with pytest.raises(ValueError, match="cannot choose k"):
        choose_k(vectors[:2], range(2, 5))


def test_explanations_name_each_cluster_by_its_answers():
    labels = np.array([0, 0, 0, 1, 1, 1])
    answers = ["angry", "Angry", "furious", "happy", "delighted", "happy"]
    texts = [f"text {i}" for i in range(6)]
    vectors = np.eye(6)
    first, second = explain(labels, answers, texts, vectors)
    assert first.top_terms[0] == "angry" and first.common_answers[0] == ("angry", 2) and first.size == 3
    assert second.top_terms[0] == "happy" and all(text in texts[3:] for text in second.examples)


def test_cluster_texts_outputs(tiny_model_dir, tmp_path):
    model = InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")
    texts = [f"message {i} about thing {i % 3}" for i in range(12)]
    result = cluster_texts(model, texts, "What is it about?", k=3)
    assert result.k == 3 and len(result.labels) == 12 and len(result.explanations) == 3
    assert sum(item.size for item in result.explanations) == 12
    data = json.loads(json.dumps(result.to_dict()))
    assert data["k"] == 3 and len(data["clusters"]) == 3 and len(data["answers"]) == 12
    assert "Instruction: 'What is it about?'" in result.table()
    png = result.plot(tmp_path / "clusters.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    chosen = cluster_texts(model, texts, "What is it about?", k_values=range(2, 5))
    assert chosen.k in (2, 3, 4) and set(chosen.silhouette_by_k) == {2, 3, 4}
    with pytest.raises(ValueError, match="k must be between"):
        cluster_texts(model, texts, "What?", k=50)


def test_cli_cluster(tiny_model_dir, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(f"message {i} about thing {i % 2}" for i in range(8)))
    code = main(["cluster", "-q", "What?", "-i", str(texts), "-k", "2", "--model", str(tiny_model_dir("llama")),
                 "--json", str(tmp_path / "out.json"), "--plot", str(tmp_path / "out.png")])
    assert code == 0 and "k = 2" in capsys.readouterr().out
    assert json.loads((tmp_path / "out.json").read_text())["k"] == 2 and (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_default_model_clusters_by_the_asked_aspect(default_model):
    from sklearn.metrics import v_measure_score

    records = load_sample("support_messages")[:72]
    texts = [record["text"] for record in records]
    by_product = cluster_texts(default_model, texts, "Which product or service is discussed?", k=6)
    by_mood = cluster_texts(default_model, texts, "How does the customer feel?", k=3)
    products, moods = [r["product"] for r in records], [r["mood"] for r in records]
    assert v_measure_score(products, by_product.labels) > v_measure_score(moods, by_product.labels) + 0.2
    assert v_measure_score(moods, by_mood.labels) > v_measure_score(products, by_mood.labels) + 0.1
