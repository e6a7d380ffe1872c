from inbedder_retrieval import InBedder
from inbedder_retrieval.demo import DEMO_INSTRUCTIONS, run_demo


def test_demo_indexes_searches_and_reuses_its_index(tiny_model_dir, tmp_path, capsys):
    model = InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")
    results = run_demo(model, path=tmp_path / "demo", k=3, cache=False)
    assert list(results) == list(DEMO_INSTRUCTIONS) and all(len(ids) == 3 for ids in results.values())
    out = capsys.readouterr().out
    assert "documents=288, instructions=3" in out and "=== Which product or service is discussed?" in out
    assert run_demo(model, path=tmp_path / "demo", k=3, cache=False) == results  # reopened, nothing re-embedded
