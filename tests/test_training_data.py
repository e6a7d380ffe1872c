"""Training data v2: labelled texts x question wordings (sizes, closed answer sets,
separation from the fixtures, no question-type shortcut words, determinism)."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import replace

import pytest

from inbedder_retrieval.training import load_records, write_records
from inbedder_retrieval.training_data import build_records, load_question_types, load_texts, shipped_folder

WRITER_WORDS = ("customer", "message", "email", "writer", "post", "review", "author", "about")
FEELING = ("emotion", "polarity")
PLACES = ("region", "country", "city")
ACRONYMS_AND_NAMES = {"VPN", "PDF", "USB", "PIN", "AI", "English"}


@pytest.fixture(scope="module")
def records():
    return build_records()


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_sizes(records):
    types = load_question_types()
    assert len(records) >= 10_000
    assert all(len(set(kind.wordings)) >= 15 for kind in types.values())
    texts = load_texts()
    assert len(texts) >= 600 and len({text.domain for text in texts}) >= 10
    assert all(len({answer.lower() for answer in text.labels.values()}) >= 3 for text in texts)
    answers_per_text = defaultdict(set)
    for record in records:
        if record.qtype:
            answers_per_text[record.input].add(record.output)
    assert sum(len(answers) >= 4 for answers in answers_per_text.values()) >= 500


def test_coarse_answers_come_from_their_closed_sets_and_answers_are_short(records):
    types = load_question_types()
    assert types["region"].answers == ("Africa", "Asia", "Europe", "North America", "South America", "Oceania")
    assert set(types["polarity"].answers) == {"positive", "negative", "neutral"}
    assert set(types["urgency"].answers) == {"low", "medium", "high"}
    coarse_pairs = {("region", "country"), ("region", "city"), ("category", "product"), ("polarity", "emotion"),
                    ("urgency", "topic"), ("course", "dish")}
    labelled = {aspect for text in load_texts() for aspect in text.labels}
    assert {aspect for pair in coarse_pairs for aspect in pair} <= labelled
    for record in records:
        if not record.qtype:
            continue
        assert 1 <= len(record.output.split()) <= 3, record
        if types[record.qtype].coarse:
            assert record.output in types[record.qtype].answers, record
        if record.qtype not in PLACES:
            assert all(word.islower() or word in ACRONYMS_AND_NAMES for word in record.output.split()), record


def test_coarse_and_fine_answers_differ_on_the_same_text():
    for text in load_texts():
        for coarse, fine in (("region", "country"), ("region", "city"), ("category", "product"), ("course", "dish"),
                             ("polarity", "emotion")):
            if coarse in text.labels and fine in text.labels:
                assert text.labels[coarse] != text.labels[fine], text


def test_no_writer_or_message_word_predicts_the_question_type(records):
    generated = [record for record in records if record.qtype]
    for word in WRITER_WORDS:
        types = Counter(record.qtype for record in generated if word in words(record.instruction))
        total = sum(types.values())
        assert total >= 200, (word, total)
        assert max(types.values()) / total <= 0.45, (word, types.most_common(3))
        topic, feeling = types["topic"], sum(types[name] for name in FEELING)
        assert 0.35 <= topic / (topic + feeling) <= 0.65, (word, topic, feeling)
    feeling_about = [record for record in generated if record.qtype in FEELING and "about" in words(record.instruction)]
    assert len(feeling_about) >= 300


def test_the_builder_is_deterministic_and_seeded(records):
    assert build_records() == records
    other = build_records(seed=1)
    assert len(other) == len(records) and other != records


def test_exclude_drops_wordings_everywhere():
    def near_held_out(wording: str) -> bool:
        return "customer" in words(wording) or wording == "What is this text about?"

    kept = build_records(exclude=near_held_out)
    assert kept
    for record in kept:
        assert not near_held_out(record.instruction)
        assert not any(near_held_out(wording) for wording in record.instructions)


def test_records_keep_their_wordings_and_type_through_a_file(records, tmp_path):
    path = tmp_path / "v2.jsonl"
    write_records(records[:50], path)
    assert load_records(path) == records[:50]
    generated = next(record for record in records if record.qtype)
    assert generated.instruction in generated.instructions and len(generated.instructions) >= 15


def test_bad_labels_are_refused_with_file_and_line(tmp_path):
    folder = tmp_path / "v2"
    folder.mkdir()
    shutil.copy(shipped_folder() / "wordings.json", folder)
    (folder / "news.jsonl").write_text(
        '{"id": "a", "text": "t", "labels": {"section": "sport", "topic": "a race", "region": "Asia"}}\n'
        '{"id": "b", "text": "t", "labels": {"section": "sport", "topic": "a race", "region": "asia"}}\n')
    with pytest.raises(ValueError, match=r"news.jsonl:2: 'asia' is not one of the 'region' answers"):
        load_texts(folder)
    (folder / "news.jsonl").write_text('{"id": "a", "text": "t", "labels": {"section": "sport", "topic": "sport"}}\n')
    with pytest.raises(ValueError, match=r"news.jsonl:1: needs >= 3 aspects"):
        load_texts(folder)


def test_cli_builds_the_records(tmp_path, records):
    from inbedder_retrieval.cli import main

    out = tmp_path / "new" / "folder" / "v2.jsonl"  # the folder is created
    assert main(["train-data", "build", "-o", str(out)]) == 0
    assert load_records(out) == records
    assert [path.name for path in out.parent.iterdir()] == ["v2.jsonl"]  # written atomically, no leftovers


def test_request_is_asked_on_support_helpdesk_and_app_texts_from_its_closed_set(records):
    request = load_question_types()["request"]
    assert request.coarse and len(set(request.wordings)) >= 18
    assert all(answer == answer.lower() for answer in request.answers)
    domain_of = {text.text: text.domain for text in load_texts()}
    per_domain = defaultdict(Counter)
    for record in records:
        if record.qtype == "request":
            assert record.output in request.answers, record
            assert len(record.instructions) == len(set(request.wordings)), record  # none near a held-out wording
            per_domain[domain_of[record.input]][record.output] += 1
    assert set(per_domain) == {"support", "helpdesk", "apps"}
    for domain in per_domain:
        labels = Counter(text.labels["request"] for text in load_texts() if text.domain == domain)
        texts = sum(text.domain == domain for text in load_texts())
        assert sum(labels.values()) == texts >= 50, domain  # every text of the domain is labelled
        assert max(labels.values()) / sum(labels.values()) <= 0.4, (domain, labels.most_common(2))
        assert sum(per_domain[domain].values()) == 3 * texts, domain  # no request wording dropped below 3


def test_option_listing_records_are_extra_and_list_the_right_answer(records):
    """``list_options``: questions that list 3-4 candidate answers, the right one among them;
    the records without them are unchanged, and no wording is near a held-out one."""
    from inbedder_retrieval.cli import build_parser
    from inbedder_retrieval.evaluation.unseen import near_held_out

    with_options = build_records(list_options=1)
    extra = Counter(with_options) - Counter(records)
    assert sum(extra.values()) == len(with_options) - len(records) >= 3_000
    assert not Counter(records) - Counter(with_options)  # every v2 record is still there
    types = load_question_types()
    for record in extra:
        assert record.qtype and record.instruction in record.instructions and len(record.instructions) <= 4
        for wording in record.instructions:
            # the answer stands as one option of an "A, B or C" list
            assert " or " in wording and re.search(rf"(^|, | or |: | of | about | concern ){re.escape(record.output)}(, | or |\?|\.|:)",
                                                   wording), (wording, record.output)
            assert near_held_out(wording) is None
        if types[record.qtype].coarse:
            assert record.output in types[record.qtype].answers
    assert build_parser().parse_args(["train-data", "build", "-o", "x.jsonl", "--list-options", "2"]).list_options == 2
    with pytest.raises(ValueError, match="list_options must be >= 0, got -1"):
        build_records(list_options=-1)


def test_option_records_can_skip_question_types(records):
    """``options_skip``: the named types get no option-listing records, the others the
    same ones as without the skip; an unknown type name is refused."""
    from inbedder_retrieval.cli import build_parser

    every = Counter(build_records(list_options=1))
    skipped = Counter(build_records(list_options=1, options_skip=("polarity",)))
    dropped = every - skipped
    assert not skipped - every and sum(dropped.values()) >= 300
    assert all(record.qtype == "polarity" and " or " in record.instruction for record in dropped)
    assert any(record.qtype == "polarity" for record in skipped)  # the plain polarity questions stay
    args = build_parser().parse_args(["train-data", "build", "-o", "x.jsonl", "--list-options", "1",
                                      "--list-options-skip", "polarity", "--list-options-skip", "emotion"])
    assert args.list_options_skip == ["polarity", "emotion"]
    with pytest.raises(ValueError, match=r"unknown question types in options_skip: \['mood'\]; known: \["):
        build_records(list_options=1, options_skip=("mood",))


def test_contrast_groups_key_emotions_by_family(records, tmp_path):
    """``contrast_groups``: every emotion answer of the data has one family, and with the
    option on, emotion records carry it (the contrastive key), others none; the records are
    otherwise the same, and the group survives a JSONL round trip."""
    from inbedder_retrieval.training import QARecord

    emotion = load_question_types()["emotion"]
    assert {emotion.group_of(text.labels["emotion"]) for text in load_texts() if "emotion" in text.labels} == {
        "joy", "calm", "surprise", "anger", "fear", "sadness", "uncertainty"}
    grouped = build_records(contrast_groups=True)
    assert [replace(record, group="") for record in grouped] == records
    assert all(bool(record.group) == (record.qtype == "emotion") for record in grouped)
    furious, annoyed = (next(r for r in grouped if r.qtype == "emotion" and r.output == answer) for answer in ("furious", "annoyed"))
    assert furious.contrast_key == annoyed.contrast_key == ("emotion", "anger")
    assert QARecord("t", "q", "furious", qtype="emotion").contrast_key == ("emotion", "furious")
    write_records([furious], tmp_path / "g.jsonl")
    assert load_records(tmp_path / "g.jsonl") == [furious]


def test_an_answer_without_a_family_or_in_two_is_refused(tmp_path):
    folder = tmp_path / "v2"
    shutil.copytree(shipped_folder(), folder)
    wordings = json.loads((folder / "wordings.json").read_text())
    groups = wordings["question_types"]["emotion"]["contrast_groups"]
    groups["anger"].remove("furious")
    (folder / "wordings.json").write_text(json.dumps(wordings))
    with pytest.raises(ValueError, match=r"\.jsonl:\d+: 'furious' is in none of the 'emotion' answer families"):
        load_texts(folder)
    groups["joy"].append("Angry")
    (folder / "wordings.json").write_text(json.dumps(wordings))
    with pytest.raises(ValueError, match=r"'emotion': answer 'angry' is in families 'joy' and 'anger'"):
        load_question_types(folder)


def test_routing_questions_are_answered_with_the_department(records):
    """``department`` (issue 16: "Which team should get this?"): a coarse type asked of support
    and help-desk texts; a help-desk ticket goes to its IT area."""
    department = load_question_types()["department"]
    assert department.coarse
    texts = load_texts()
    routed = [text for text in texts if "department" in text.labels]
    assert {text.domain for text in routed} == {"support", "helpdesk"} and len(routed) >= 200
    assert all(text.labels["department"] == text.labels["it_area"] for text in routed if text.domain == "helpdesk")
    assert len({text.labels["department"] for text in routed if text.domain == "support"}) == 5
    asked = Counter(record.output for record in records if record.qtype == "department")
    assert sum(asked.values()) == 3 * len(routed) and set(asked) <= set(department.answers)
