"""The ``inbedder`` command stays light: help, version and the model list never import
torch or transformers (each case runs in a fresh interpreter)."""

import argparse
import subprocess
import sys

import pytest

from inbedder_retrieval.cli import build_parser

HEAVY = ("torch", "transformers", "sentence_transformers", "sklearn", "faiss", "qdrant_client")


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the parser (``()``, ``("index",)``, ``("index", "add")``, ...)."""
    found = [prefix]
    for action in parser._actions:  # noqa: SLF001 (argparse has no public listing of subcommands)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                found += _commands(sub, (*prefix, name))
    return found


COMMANDS = _commands(build_parser())


def _imported_after(argv: list[str]) -> list[str]:
    code = (
        "import sys\nfrom inbedder_retrieval.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print('imported:', *(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return done.stderr.rsplit("imported:", 1)[1].split()


@pytest.mark.parametrize("argv", [[*command, "--help"] for command in COMMANDS] + [["--version"], ["models"]],
                         ids=lambda argv: " ".join(argv))
def test_help_version_and_models_do_not_import_torch(argv):
    assert _imported_after(argv) == []


def test_every_subcommand_is_covered():
    assert {("models",), ("search",), ("index", "add"), ("eval",)} <= set(COMMANDS) and len(COMMANDS) >= 18


def test_version(capsys):
    from inbedder_retrieval import __version__

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"inbedder {__version__}"


def test_package_names_stay_importable():
    import inbedder_retrieval

    for name in inbedder_retrieval.__all__:
        assert getattr(inbedder_retrieval, name) is not None
    with pytest.raises(AttributeError, match="no_such_name"):
        inbedder_retrieval.no_such_name  # noqa: B018


def test_index_argument_errors_come_before_torch(tiny_model_dir, tmp_path):
    """An unknown instruction or a missing index fails without importing the model stack
    (was: after the 20 s model load)."""
    from inbedder_retrieval.cli import main

    path = str(tmp_path / "idx")
    assert main(["index", "create", path, "-q", "Q1?", "--model", str(tiny_model_dir("llama")), "--device", "cpu"]) == 0
    for argv in (["search", path, "soup", "-q", "Q9?"], ["index", "remove-instruction", path, "Q9?"],
                 ["index", "add-instruction", path, "Q1?"], ["search", str(tmp_path / "none"), "soup"],
                 ["index", "info", str(tmp_path / "none")]):
        assert _imported_after(argv) == [], argv
