import numpy as np
import pytest

from inbedder_retrieval import InBedder, get_model


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")


def test_empty_list_gives_empty_array(model):
    empty = model.encode([], "What is it?")
    assert empty.shape == (0, model.dim) and empty.dtype == np.float32
    assert model.answer([], "What is it?") == []


@pytest.mark.parametrize("bad, position, kind", [([None], 0, "NoneType"), (["a", b"b"], 1, "bytes"), (["a", "b", 7], 2, "int")])
def test_non_strings_name_their_position(model, bad, position, kind):
    with pytest.raises(TypeError, match=rf"texts\[{position}\] is {kind}"):
        model.encode(bad, "What is it?")


def test_blank_text_and_empty_instruction(model):
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        model.encode(["fine", ""], "What is it?")
    with pytest.raises(ValueError, match="instruction is empty"):
        model.encode(["fine"], "")
    with pytest.raises(TypeError, match="instruction must be a str"):
        model.encode(["fine"], None)


def test_bad_options(model):
    with pytest.raises(ValueError, match="convert_to"):
        model.encode(["fine"], "Q?", convert_to="list")
    with pytest.raises(ValueError, match="batch_size"):
        model.encode(["fine"], "Q?", batch_size=0)
    with pytest.raises(ValueError, match="No instruction given"):
        model.encode_queries(["fine"])


def test_query_and_document_instructions(tiny_model_dir):
    model = InBedder.from_pretrained(
        tiny_model_dir("llama"), device="cpu", query_instruction="Q1?", document_instruction="Q2?"
    )
    np.testing.assert_allclose(model.encode_queries(["x y"]), model.encode(["x y"], "Q1?"))
    np.testing.assert_allclose(model.encode_documents(["x y"]), model.encode(["x y"], "Q2?"))
    np.testing.assert_allclose(model.encode_documents(["x y"], "Q3?"), model.encode(["x y"], "Q3?"))


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(KeyError, match="Known models: smollm2-135m-inbedder, smollm2-135m-instruct, BrandonZYW/llama-2-7b-InBedder"):
        InBedder.from_pretrained("no-such-model")
    with pytest.raises(KeyError, match="roberta-large-InBedder"):
        get_model("nope")


def test_bad_pooling_and_dtype(tiny_model_dir):
    with pytest.raises(ValueError, match="pooling must be one of"):
        InBedder.from_pretrained(tiny_model_dir("llama"), pooling="cls")
    with pytest.raises(ValueError, match="masked models"):
        InBedder.from_pretrained(tiny_model_dir("roberta"), pooling="fst_gen")
    with pytest.raises(ValueError, match="dtype must be one of"):
        InBedder.from_pretrained(tiny_model_dir("llama"), dtype="float8")


@pytest.mark.parametrize("bad", [None, 3])
def test_texts_that_are_not_a_list(model, bad):
    with pytest.raises(TypeError, match="texts must be a list of strings"):
        model.encode(bad, "What is it?")


def test_concurrent_threads_get_the_sequential_vectors(model):
    """Threads share one model (tokenizer padding/truncation state, caches): calls take
    turns and give the sequential vectors. Without the model's lock this mix of ``encode``
    and ``encode_many`` fails with "Unable to create tensor" within a few rounds."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [([f"text {i} " * (1 + i % 7) * 10, "short", "mid length text " * (i % 3 + 1)], "What is it?" if i % 2 else "Who?")
            for i in range(40)]
    expected = [model.encode(texts, q) for texts, q in jobs]
    for _ in range(2):
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda job: model.encode(*job), jobs))
            many = list(pool.map(lambda job: model.encode_many(job[0], ["What is it?", "Who?"]), jobs))
        for (texts, q), g, m, e in zip(jobs, got, many, expected):
            np.testing.assert_allclose(g, e, atol=1e-5)
            np.testing.assert_allclose(m[q], e, atol=1e-5)
