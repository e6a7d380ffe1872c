"""An InBedder as a SentenceTransformer: sentence-transformers' own evaluators, with the
instruction as the prompt, on the shipped two-aspect fixture."""

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.evaluation import InformationRetrievalEvaluator, TripletEvaluator

from inbedder_retrieval import InBedder
from inbedder_retrieval.evaluation import TWO_ASPECT_INSTRUCTIONS
from inbedder_retrieval.samples import load_sample
from inbedder_retrieval.sbert import to_sentence_transformer

RECORDS = load_sample("two_aspects")
SENTIMENT = TWO_ASPECT_INSTRUCTIONS["sentiment"]


def triplets(aspect: str, other: str, limit: int = 32) -> tuple[list[str], list[str], list[str]]:
    """(anchor, positive, negative) texts: the positive shares ``aspect`` and differs in
    ``other``; the negative shares ``other`` and differs in ``aspect``."""
    anchors, positives, negatives = [], [], []
    for anchor in RECORDS[:limit]:
        pos = next(r for r in RECORDS if r[aspect] == anchor[aspect] and r[other] != anchor[other])
        neg = next(r for r in RECORDS if r[other] == anchor[other] and r[aspect] != anchor[aspect])
        anchors.append(anchor["text"]), positives.append(pos["text"]), negatives.append(neg["text"])
    return anchors, positives, negatives


def own_triplet_accuracy(model: InBedder, instruction: str, anchors, positives, negatives) -> float:
    a, p, n = (model.encode(texts, instruction) for texts in (anchors, positives, negatives))
    return float(np.mean((a * p).sum(1) > (a * n).sum(1)))


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return InBedder.from_pretrained(str(tiny_model_dir("llama")), device="cpu")


def test_is_a_sentence_transformer_with_prompts_as_instructions(tiny):
    st = to_sentence_transformer(tiny, prompts={"feel": SENTIMENT, "query": "Q?", "document": "D?"})
    texts = [r["text"] for r in RECORDS[:5]]
    assert isinstance(st, SentenceTransformer)
    expected = tiny.encode(texts, SENTIMENT)
    np.testing.assert_allclose(st.encode(texts, prompt=SENTIMENT, normalize_embeddings=True), expected, atol=1e-5)
    np.testing.assert_allclose(st.encode(texts, prompt_name="feel", batch_size=2, normalize_embeddings=True,
                                         show_progress_bar=False), expected, atol=1e-5)
    as_tensor = st.encode(texts, prompt_name="feel", convert_to_tensor=True)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.shape == (5, tiny.dim)
    np.testing.assert_allclose(st.encode_query(texts), tiny.encode(texts, "Q?", normalize=False), atol=1e-5)
    np.testing.assert_allclose(st.encode_document(texts), tiny.encode(texts, "D?", normalize=False), atol=1e-5)
    assert st.get_sentence_embedding_dimension() == tiny.dim == st.get_embedding_dimension()
    assert st.max_seq_length == tiny.description.max_length
    similarity = st.similarity(st.encode(texts[:2], prompt="Q?"), st.encode(texts, prompt="Q?"))
    np.testing.assert_allclose(similarity.numpy(), tiny.encode(texts[:2], "Q?") @ tiny.encode(texts, "Q?").T,
                               atol=1e-5)
    assert st.encode(texts[0], prompt="Q?").shape == (tiny.dim,)


def test_without_an_instruction_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="needs an instruction: pass prompt="):
        to_sentence_transformer(tiny).encode(["a text"])
    st = to_sentence_transformer(tiny, default_instruction=SENTIMENT)
    np.testing.assert_allclose(st.encode(["a text"]), tiny.encode(["a text"], SENTIMENT, normalize=False), atol=1e-5)
    with pytest.raises(ValueError, match="instruction is empty"):
        to_sentence_transformer(tiny, prompts={"query": " "})


def test_triplet_evaluator_matches_our_own_count(tiny, tmp_path):
    anchors, positives, negatives = triplets("sentiment", "topic")
    st = to_sentence_transformer(tiny, prompts={"query": SENTIMENT, "document": SENTIMENT})
    result = TripletEvaluator(anchors, positives, negatives, name="sentiment", write_csv=False)(st)
    assert result["sentiment_cosine_accuracy"] == pytest.approx(
        own_triplet_accuracy(tiny, SENTIMENT, anchors, positives, negatives), abs=1e-6)


def test_information_retrieval_evaluator_matches_our_own_ranking(tiny):
    queries = {f"q{n}": r["text"] for n, r in enumerate(RECORDS[:8])}
    corpus = {f"d{n}": r["text"] for n, r in enumerate(RECORDS[8:], start=8)}
    relevant = {f"q{n}": {f"d{m}" for m, d in enumerate(RECORDS[8:], start=8) if d["sentiment"] == q["sentiment"]}
                for n, q in enumerate(RECORDS[:8])}
    st = to_sentence_transformer(tiny, prompts={"feel": SENTIMENT})
    evaluator = InformationRetrievalEvaluator(queries, corpus, relevant, name="feel", query_prompt_name="feel",
                                              corpus_prompt_name="feel", write_csv=False)
    result = evaluator(st)
    q = tiny.encode(list(queries.values()), SENTIMENT)
    d = tiny.encode(list(corpus.values()), SENTIMENT)
    top = [list(corpus)[i] for i in (q @ d.T).argmax(1)]
    expected = np.mean([doc in relevant[qid] for qid, doc in zip(queries, top)])
    assert result["feel_cosine_accuracy@1"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_default_model_under_sentence_transformers_evaluator(default_model):
    """The shipped model, measured by sentence-transformers' TripletEvaluator, sees the
    sentiment aspect when asked about it, and the ST number equals our own count."""
    anchors, positives, negatives = triplets("sentiment", "topic", limit=48)
    st = to_sentence_transformer(default_model, prompts={"query": SENTIMENT, "document": SENTIMENT})
    accuracy = TripletEvaluator(anchors, positives, negatives, name="s", write_csv=False)(st)["s_cosine_accuracy"]
    assert accuracy == pytest.approx(own_triplet_accuracy(default_model, SENTIMENT, anchors, positives, negatives),
                                     abs=1e-6)
    assert accuracy > 0.6
