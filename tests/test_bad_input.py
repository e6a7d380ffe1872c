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
    with pytest.raises(KeyError, match="Known models: smollm2-135m-inbedder, smollm2-135m-instruct, smollm2-135m-inbedder-v2, smollm2-135m-inbedder-v1, BrandonZYW/llama-2-7b-InBedder"):
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


def test_a_single_string_is_one_text_for_encode_but_refused_by_encode_many(model):
    """``encode("text", q)`` is documented to give one vector; ``encode_many`` takes lists only."""
    vector = model.encode("red apples", "What is it?")
    assert vector.shape == (model.dim,)
    np.testing.assert_allclose(vector, model.encode(["red apples"], "What is it?")[0], atol=1e-6)
    with pytest.raises(TypeError, match="texts must be a list of strings, got a single str"):
        model.encode_many("red apples", ["What is it?"])
    with pytest.raises(TypeError, match="instructions must be a list of str, got a single str"):
        model.encode_many(["red apples"], "What is it?")  # was: one space per letter


def test_lone_surrogate_names_its_position(model):
    with pytest.raises(ValueError, match=r"texts\[3\] holds a lone surrogate '\\ud800' at character 0"):
        model.encode(["a", "b", "c", "\ud800 d"], "What is it?")
    with pytest.raises(ValueError, match="instruction holds a lone surrogate"):
        model.encode(["a"], "What \udfff?")


def test_counts_are_checked(model):
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got -1"):
        model.encode_many(["a"], ["Q?"], batch_size=-1)
    with pytest.raises(TypeError, match="batch_size must be a positive int"):
        model.encode(["a"], "Q?", batch_size=2.5)
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        model.answer(["a"], "Q?", max_new_tokens=-1)
    with pytest.raises(TypeError, match="batch_size must be a positive int, got bool"):
        model.encode(["a"], "Q?", batch_size=True)
    assert model.encode(["a", "b"], "Q?", batch_size=np.int64(1)).shape == (2, model.dim)  # numpy ints are ints


def test_an_instruction_that_leaves_no_room_for_the_text_is_refused(model):
    """A 10,000-character instruction cut every text away (left truncation): every text got
    the same vector. Now it must leave a quarter of ``max_length`` for the text."""
    texts = ["The soup was cold.", "Great phone, fast charging."]
    huge = "How does the customer feel? " * 358  # 10,024 characters
    for call in (lambda: model.encode(texts, huge), lambda: model.encode_many(texts, ["Q?", huge]),
                 lambda: model.answer(texts, huge)):
        with pytest.raises(ValueError, match=r"instruction is too long.* takes \d+ of max_length=512 tokens, "
                                             r"leaving fewer than 128 for the text.*10024 characters"):
            call()
    long = "How does the customer feel about the product, the delivery, the price and the service? " * 4
    assert max(model.backend.token_lengths(model.backend.build_prompts(texts, long))) < 512  # nothing cut
    vectors = model.encode(texts, long)
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3  # the texts still count (cut away, they were equal)


def test_the_instruction_limit_leaves_a_quarter_of_max_length(tiny_model_dir):
    """The instruction and the template text after the input may take 3/4 of max_length."""
    model = InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu", max_length=64)
    fits = "Q?"
    while model._tokens_after_input(fits + " x") <= 48:
        fits += " x"
    assert model._tokens_after_input(fits) in (47, 48)
    assert model.check_instruction(fits) == fits
    with pytest.raises(ValueError, match=r"takes (49|50) of max_length=64 tokens, leaving fewer than 16 for the text"):
        model.check_instruction(fits + " x")
