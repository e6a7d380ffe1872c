from inbedder_retrieval.progress import PROGRESS_BAR_MIN_TEXTS, show_progress


def test_explicit_choice_wins_and_long_jobs_show_a_bar(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert show_progress(True, 1) and not show_progress(False, 10**6)
    assert show_progress(None, PROGRESS_BAR_MIN_TEXTS) and not show_progress(None, PROGRESS_BAR_MIN_TEXTS - 1)


def test_tqdm_disable_turns_the_default_off(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not show_progress(None, 10**6)
    assert show_progress(True, 10**6)
