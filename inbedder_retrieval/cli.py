"""The ``inbedder`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import numpy as np

Handler = Callable[[argparse.Namespace], int]


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="registry name, hub id or folder (default: the shipped model)")
    parser.add_argument("--pooling", choices=("fst_gen", "avg_gen", "reencode"), default=None, help="override the model's pooling")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per batch (default 32)")


def _input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instruction", "-q", required=True, help="the question asked about every text")
    parser.add_argument("--input", "-i", required=True, help=".jsonl file (one object per line) or .txt file (one text per line)")
    parser.add_argument("--text-field", default="text", help="field holding the text in .jsonl input (default: text)")


def _load_model(args: argparse.Namespace):
    from .embedder import InBedder

    return InBedder.from_pretrained(args.model, pooling=args.pooling, device=args.device, dtype=args.dtype)


def cmd_models(args: argparse.Namespace) -> int:
    from .models import DEFAULT_MODEL, list_models

    models = list_models()
    if args.json:
        print(json.dumps([{"name": m.name, "family": m.family, "pooling": m.pooling, "dim": m.dim,
                           "params_millions": m.params_millions, "license": m.license,
                           "description": m.description} for m in models], indent=2))
        return 0
    print(f"{'name':36} {'family':8} {'pooling':9} {'dim':>5} {'params':>7}  description")
    for m in models:
        star = "*" if m.name == DEFAULT_MODEL else " "
        print(f"{m.name + star:36} {m.family:8} {m.pooling:9} {m.dim:>5} {m.params_millions:>6.0f}M  {m.description}")
    print("* default")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from .io import read_texts

    texts = read_texts(args.input, args.text_field)
    model = _load_model(args)
    vectors = model.encode(texts, args.instruction, batch_size=args.batch_size,
                           normalize=not args.no_normalize, show_progress_bar=True)
    np.save(args.output, vectors, allow_pickle=False)
    print(f"Wrote {vectors.shape[0]} x {vectors.shape[1]} float32 vectors to {args.output}", file=sys.stderr)
    return 0


def cmd_answer(args: argparse.Namespace) -> int:
    from .io import read_texts

    texts = read_texts(args.input, args.text_field)
    model = _load_model(args)
    answers = model.answer(texts, args.instruction, max_new_tokens=args.max_new_tokens,
                           batch_size=args.batch_size, show_progress_bar=True)
    for text, answer in zip(texts, answers):
        print(json.dumps({"text": text, "answer": answer}, ensure_ascii=False))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(_load_model(args) if args.model or args.pooling else None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inbedder",
        description="Instruction-aware text embedding: embed texts as answers to a question about them.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list the known models", description="List the model registry.")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(handler=cmd_models)

    embed = commands.add_parser("embed", help="embed texts under an instruction into a .npy file",
                                description="Embed texts under an instruction; writes a float32 .npy matrix (no pickle).")
    _input_options(embed)
    embed.add_argument("--output", "-o", required=True, help="output .npy path")
    embed.add_argument("--no-normalize", action="store_true", help="keep raw (not unit-length) vectors")
    _model_options(embed)
    embed.set_defaults(handler=cmd_embed)

    answer = commands.add_parser("answer", help="print the model's answer for each text (JSONL)",
                                 description="Generate the model's short answer to the instruction for each text.")
    _input_options(answer)
    answer.add_argument("--max-new-tokens", type=int, default=None, help="answer length limit")
    _model_options(answer)
    answer.set_defaults(handler=cmd_answer)

    demo = commands.add_parser("demo", help="show instruction-dependent neighbours on a shipped sample",
                               description="Embed shipped customer messages under two instructions and print neighbours.")
    _model_options(demo)
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (FileNotFoundError, ValueError, TypeError, KeyError, ModuleNotFoundError) as error:
        print(f"inbedder: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
