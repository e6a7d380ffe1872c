"""Unseen-wording evaluation (issue 16): the wordings, the near-copy rule, the new fixtures,
no leak into training data, the scores on constructed vectors, the CLI, and the default's margin."""

import functools
import json
import re
from collections import Counter
from importlib import resources
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from inbedder_retrieval.cli import main
from inbedder_retrieval.evaluation import FIXTURES, baselines
from inbedder_retrieval.evaluation.unseen import (
    AspectWordings,
    balanced_subset,
    embed_many_with,
    fixture_hm,
    held_out_wordings,
    is_near_copy,
    load_wordings,
    markdown_tables,
    near_held_out,
    normalise,
    parse_wordings,
    score_wordings,
    summarise,
)
from inbedder_retrieval.samples import SAMPLES, load_sample

DATA = Path(str(resources.files("inbedder_retrieval.data")))
NEW_FIXTURES = ("customer_emails", "news_snippets", "helpdesk_tickets")


@functools.cache
def training_records() -> tuple[dict, ...]:
    """Every training record, present and future: the record-format JSONL files under
    data/train*/ and the records the v2 builder generates, augmentation pools included."""
    from inbedder_retrieval.training_data import build_records

    files = sorted(path for folder in DATA.glob("train*") for path in folder.glob("**/*.jsonl"))
    assert files, "no training data found"
    rows = [json.loads(line) for path in files for line in path.read_text("utf-8").splitlines() if line.strip()]
    generated = [{"input": record.input, "instruction": wording}
                 for record in build_records() for wording in {record.instruction, *record.instructions}]
    return tuple(row for row in rows if "instruction" in row) + tuple(generated)


def test_no_held_out_wording_or_near_copy_in_training_data():
    instructions = {record["instruction"] for record in training_records()}
    leaks = {instruction: near_held_out(instruction) for instruction in instructions}
    assert not {k: v for k, v in leaks.items() if v}, "held-out wordings leaked into training"


def test_the_fresh_wordings_stay_out_of_training_data():
    """benchmarks/fresh_wordings.json (README: the check for selection bias) is held out too."""
    fresh = parse_wordings((Path(__file__).parents[1] / "benchmarks" / "fresh_wordings.json").read_text("utf-8"),
                           "fresh_wordings.json", {"support_messages": ["intent", "product", "mood"],
                                                   "helpdesk_tickets": ["subject", "urgency"]})
    assert sorted(len(entry.held_out) for entry in fresh.values()) == [12, 12, 12, 12]
    held_out = [wording for entry in fresh.values() for wording in entry.held_out]
    instructions = {record["instruction"] for record in training_records()}
    leaks = {instruction: near_held_out(instruction, held_out) for instruction in instructions}
    assert not {k: v for k, v in leaks.items() if v}, "fresh held-out wordings leaked into training"


def test_no_fixture_text_in_training_data():
    fixture_texts = {record[key] for name in SAMPLES for record in load_sample(name)
                     for key in ("text", "text1", "text2") if key in record}
    inputs = {record["input"] for record in training_records()}
    assert not fixture_texts & inputs


def test_near_copy_rule():
    assert normalise("  What's the   CUSTOMER'S e-mail about?! ") == "whats the customers email about"
    copies = [
        ("What is the customer's email about?", "what is the customers email about"),  # case, punctuation
        ("How does the customer feel about it?", "How does the customer feel about this?"),  # one word
        ("Which continent is this news from?", "Which continent is this new from?"),  # a typo
        ("Which part of the world did this happen in?", "In which part of the world did this happen?"),  # reordered
        ("How urgent is this request?", "How urgent is this request, please?"),  # one word added
    ]
    different = [
        ("How does the customer feel?", "What is the customer's email about?"),
        ("Which continent is this about?", "Which city is mentioned?"),
        ("How urgently does this request need handling?", "How urgent is this message?"),
        ("Is the request urgent?", "What is the request about?"),
    ]
    assert all(is_near_copy(a, b) and is_near_copy(b, a) for a, b in copies)
    assert not any(is_near_copy(a, b) for a, b in different)
    assert near_held_out("Which part of the world did this happen in??") == "Which part of the world did this happen in?"
    assert near_held_out("What is the topic?") is None
    assert near_held_out("How urgent is this request?", ["How urgent is this request"]) == "How urgent is this request"


def test_wordings_cover_every_aspect_half_held_out():
    wordings = load_wordings()
    expected = {f"{fixture}/{aspect}" for fixture, aspects in FIXTURES.items() for aspect in aspects}
    assert set(wordings) == expected | {"support_messages/intent"}
    for key, entry in wordings.items():
        assert len(entry.held_out) == len(entry.seen) == 10, key
        assert len(set(entry.held_out + entry.seen)) == 20, key
        assert entry.contrast != entry.aspect
        records = load_sample(entry.fixture)
        assert all(entry.aspect in r and entry.contrast in r for r in records), key
    seen = [w for entry in wordings.values() for w in entry.seen]
    # the seen half may be used for training, so none of it may nearly copy a held-out wording
    assert not [w for w in seen if near_held_out(w)]
    assert len(held_out_wordings()) == 10 * len(wordings)
    held = set(held_out_wordings())
    assert not held & {q for aspects in FIXTURES.values() for q in aspects.values()}


@pytest.mark.parametrize("fixture", NEW_FIXTURES)
def test_new_fixtures_are_crossed_balanced_and_registered(fixture):
    records = load_sample(fixture)
    aspects = list(FIXTURES[fixture])
    assert len(records) >= 100 and len(aspects) == 2
    assert len({r["id"] for r in records}) == len({r["text"] for r in records}) == len(records)
    values = [sorted({r[a] for r in records}) for a in aspects]
    cells = Counter(tuple(r[a] for a in aspects) for r in records)
    assert set(cells) == set(product(*values)), "every label pair occurs"
    assert len(set(cells.values())) == 1, "balanced"
    for record in records:
        sentences = re.findall(r"[.!?]+(?:\s|$)", record["text"])
        assert 1 <= len(sentences) <= 3, record["text"]


def test_scores_on_constructed_vectors():
    records = [{"text": f"t{i}", "a": a, "b": b} for i, (a, b, _) in enumerate(product("xy", "pq", range(3)))]
    entries = [AspectWordings("toy", "a", "b", ("A held 1", "A held 2"), ("A seen",)),
               AspectWordings("toy", "b", "a", ("B held",), ("B seen",))]
    by = {"a": np.array([[1.0, 0.0] if r["a"] == "x" else [0.0, 1.0] for r in records]),
          "b": np.array([[1.0, 0.0] if r["b"] == "p" else [0.0, 1.0] for r in records])}

    def embed_many(texts, instructions):
        assert texts == [r["text"] for r in records]
        # "A" wordings follow aspect a, except "A held 2", which follows b (the wrong aspect)
        return {q: by["b" if q.startswith("B") or q == "A held 2" else "a"] + 0.01 * np.arange(len(texts))[:, None]
                for q in instructions}

    scores = score_wordings(embed_many, records, entries)
    assert {(s.wording, s.held_out) for s in scores} == {("A held 1", True), ("A held 2", True), ("A seen", False),
                                                         ("B held", True), ("B seen", False)}
    summaries = {s.aspect: s for s in summarise(scores)}
    assert summaries["a"].held_out_min == 0.0 and summaries["a"].held_out_mean == 0.5
    assert summaries["a"].seen_mean == summaries["b"].held_out_mean == 1.0
    assert fixture_hm(list(summaries.values())) == {"toy": pytest.approx(2 / 3)}
    assert fixture_hm(list(summaries.values()), held_out=False) == {"toy": 1.0}
    table = markdown_tables({"toy model": list(summaries.values())})
    assert "| toy/a | 0.500 (0.000) |" in table and "| **toy HM** | **0.667** |" in table
    assert len(score_wordings(embed_many, records, entries, per_aspect=1)) == 4
    with pytest.raises(ValueError, match="one fixture"):
        score_wordings(embed_many, records, entries + [AspectWordings("other", "a", "b", ("q",), ())])


def test_instruction_blind_embedders_embed_once():
    calls = []

    def blind(texts, instruction):
        calls.append(instruction)
        return np.ones((len(texts), 2))

    blind.ignores_instruction = True
    vectors = embed_many_with(blind)(["a", "b"], ["Q1?", "Q2?", "Q3?"])
    assert len(calls) == 1 and set(vectors) == {"Q1?", "Q2?", "Q3?"}
    aware = embed_many_with(lambda texts, q: np.full((len(texts), 2), len(q)))(["a"], ["Q?", "QQ?"])
    assert aware["Q?"][0, 0] == 2 and aware["QQ?"][0, 0] == 3
    assert baselines.ignores_instruction(baselines.sentence_embedder(None))
    assert not baselines.ignores_instruction(baselines.prefixed_sentence_embedder(None))


def test_balanced_subset():
    records = load_sample("news_snippets")
    subset = balanced_subset(records, ["subject", "region"], 2)
    assert len(subset) == 32 and set(Counter((r["subject"], r["region"]) for r in subset).values()) == {2}


def test_cli_eval_unseen_on_a_tiny_model(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert main(["eval", "--unseen", "--fixture", "helpdesk_tickets", "--model", str(tiny_model_dir("llama")),
                 "--device", "cpu", "--no-baselines", "--unseen-wordings", "2", "--unseen-per-cell", "2",
                 "--unseen-json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held-out wordings" in printed and "| helpdesk_tickets/urgency |" in printed
    assert "| **helpdesk_tickets HM** |" in printed and "chance = 0.500" in printed
    (rows,) = json.loads(out.read_text()).values()
    assert len(rows) == 8 and sum(row["held_out"] for row in rows) == 4  # 2 aspects x (2 held out + 2 seen)
    assert all(0 <= row["accuracy"] <= 1 for row in rows)


def test_cli_eval_unseen_scores_the_wordings_of_a_file(tiny_model_dir, tmp_path, capsys):
    wordings = tmp_path / "mine.json"
    wordings.write_text(json.dumps({"helpdesk_tickets/urgency": {
        "contrast": "subject", "held_out": ["How soon must IT react?", "Can this wait?"], "seen": []}}))
    out = tmp_path / "scores.json"
    assert main(["eval", "--unseen", "--unseen-file", str(wordings), "--model", str(tiny_model_dir("llama")),
                 "--device", "cpu", "--no-baselines", "--unseen-per-cell", "2", "--unseen-json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| helpdesk_tickets/urgency |" in printed and "helpdesk_tickets/subject" not in printed
    assert "held-out wordings" in printed and "seen wordings" not in printed and "nan" not in printed
    (rows,) = json.loads(out.read_text()).values()
    assert [row["wording"] for row in rows] == ["How soon must IT react?", "Can this wait?"]


def test_a_missing_or_wrong_wordings_file_is_refused_before_the_model_loads(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"helpdesk_tickets/mood": {"contrast": "subject", "held_out": ["a?"]}}')
    for path, message in ((tmp_path / "missing.json", "No such file"), (bad, "has no aspect 'mood'")):
        assert main(["eval", "--unseen", "--unseen-file", str(path), "--model", "/nonexistent/model"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


@pytest.mark.parametrize(("content", "message"), [
    ("[1, 2]", "must be a non-empty JSON object"),
    ("{nope", "is not JSON"),
    ('{"helpdesk": {"contrast": "subject", "held_out": ["a?"]}}', "must be 'fixture/aspect'"),
    ('{"helpdesk_tickets/urgency": {"held_out": ["a?"]}}', "needs a 'contrast' aspect"),
    ('{"helpdesk_tickets/urgency": {"contrast": "subject", "held_out": [""]}}', "non-empty wordings"),
    ('{"helpdesk_tickets/urgency": {"contrast": "subject", "held_out": [], "seen": []}}', "has no wording"),
    ('{"recipes/course": {"contrast": "diet", "held_out": ["a?"]}}', "unknown fixture 'recipes'"),
    ('{"helpdesk_tickets/mood": {"contrast": "subject", "held_out": ["a?"]}}', "has no aspect 'mood'"),
])
def test_a_wordings_file_with_a_mistake_is_refused_naming_it(content, message):
    fixtures = {"helpdesk_tickets": ["subject", "urgency"]}
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_wordings(content, "mine.json", fixtures)
    assert str(caught.value).startswith("mine.json")


# Fast form of the full measurement (`make test`): 36 + 32 texts, the first 3 held-out wordings per
# aspect, the default against plain all-MiniLM-L6-v2 (which ignores the instruction). Measured with
# smollm2-135m-inbedder (ours - MiniLM, mean over the 3 wordings): customer_emails topic +0.050,
# feeling +0.648; news_snippets subject +0.231, region +0.701 (the default before the routing
# questions, smollm2-135m-inbedder-v2: -0.066, +0.648, +0.223, +0.704; v1: -0.216, +0.518, +0.165,
# +0.331). The guard keeps what the default does, with margin; the goal is issue 16's "beats the
# plain embedder by a wide margin on every aspect", not yet met on customer_emails topic.
FAST_FIXTURES = {"customer_emails": 3, "news_snippets": 2}  # records per label pair
FAST_WORDINGS = 3
GUARD_MARGIN = {("customer_emails", "topic"): 0.0, ("customer_emails", "feeling"): 0.50,
                ("news_snippets", "subject"): 0.15, ("news_snippets", "region"): 0.55}
GOAL_MARGIN = 0.10


@pytest.fixture(scope="module")
def fast_margins(default_model) -> dict[tuple[str, str], float]:
    """Held-out mean of the default minus that of plain MiniLM, per (fixture, aspect), on the subset."""
    from inbedder_retrieval.embedder import load_reencoder

    wordings = load_wordings()
    minilm = embed_many_with(baselines.sentence_embedder(load_reencoder(None, default_model.backend.device)))
    margins = {}
    for fixture, per_cell in FAST_FIXTURES.items():
        records = balanced_subset(load_sample(fixture), list(FIXTURES[fixture]), per_cell)
        held = [AspectWordings(e.fixture, e.aspect, e.contrast, e.held_out[:FAST_WORDINGS], ())
                for e in wordings.values() if e.fixture == fixture]
        ours = {s.aspect: s.held_out_mean for s in summarise(score_wordings(default_model.encode_many, records, held))}
        plain = {s.aspect: s.held_out_mean for s in summarise(score_wordings(minilm, records, held))}
        margins.update({(fixture, aspect): ours[aspect] - plain[aspect] for aspect in ours})
    return margins


@pytest.mark.slow
def test_default_keeps_its_lead_on_unseen_wordings(fast_margins):
    assert {key: round(fast_margins[key], 3) for key in GUARD_MARGIN if fast_margins[key] < GUARD_MARGIN[key]} == {}


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 16: the default is only +0.05 above plain MiniLM on customer_emails "
                                       "topic under held-out wordings on this subset; remove this mark when "
                                       "a default that passes ships")
def test_default_beats_plain_minilm_on_every_aspect_under_unseen_wordings(fast_margins):
    assert {key: round(m, 3) for key, m in fast_margins.items() if m < GOAL_MARGIN} == {}



def test_answer_types_sorts_answers_and_maps_every_label():
    """benchmarks/answer_types.py (README: what limits the weakest aspects): each label of
    the aspects it reads maps to answers that training data v2 can give, and answers are
    sorted into right / misread text / other answer."""
    import importlib.util

    from inbedder_retrieval.samples import load_sample

    path = Path(__file__).parents[1] / "benchmarks" / "answer_types.py"
    spec = importlib.util.spec_from_file_location("answer_types", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for key, (families_of, right) in module.LABEL_ANSWERS.items():
        fixture, aspect = key.split("/")
        assert set(right) == {record[aspect] for record in load_sample(fixture)}, key
        assert all(wanted <= set(families_of().values()) for wanted in right.values()), key
    families, right = module._emotions(), module.LABEL_ANSWERS["support_messages/mood"][1]
    kinds, others = module.sort_answers(["Nervous", "furious", "laptop", "happy"], ["worried", "happy", "angry", "happy"],
                                        families, right)
    assert kinds == Counter({"right": 2, "misread text": 1, "other answer": 1}) and others == Counter({"laptop": 1})
