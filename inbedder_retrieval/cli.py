"""The ``inbedder`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InBedderError
from .evaluation import FIXTURES
from .evaluation.hub import HUB_SETS

#: Errors that mean bad input (a missing file, malformed JSON, an unknown instruction or
#: model, a refused value): ``inbedder`` prints ``inbedder: error: ...`` and exits 2.
#: Anything else is a bug and shows its traceback.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    InBedderError,  # the library's own errors (locked, corrupt or incompatible index, ...)
    ValueError,  # refused values, malformed input files and JSON, FilterError
    TypeError,  # wrong kinds of values
    KeyError,  # unknown instruction, model or registry entry
    FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError,
    ModuleNotFoundError,  # an optional extra that is not installed
)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="registry name, hub id or folder (default: the shipped model)")
    parser.add_argument("--pooling", choices=("fst_gen", "avg_gen", "reencode"), default=None, help="override the model's pooling")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per batch (default 32)")


def _input_options(parser: argparse.ArgumentParser, repeatable: bool = False) -> None:
    if repeatable:
        parser.add_argument("--instruction", "-q", required=True, action="append", help="a question asked about every text (repeatable)")
    else:
        parser.add_argument("--instruction", "-q", required=True, help="the question asked about every text")
    parser.add_argument("--input", "-i", required=True, help=INPUT_HELP)
    parser.add_argument("--text-field", default="text", help="field (column) holding the text (default: text)")
    parser.add_argument("--id-field", default="id", help="field (column) holding the id, if any (default: id)")


INPUT_HELP = ".jsonl (one object per line), .csv (header line, then rows), .parquet or .txt (one text per line)"


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


def _write_npy(path: str, vectors: np.ndarray, ids: list[str]) -> None:
    np.save(path, vectors, allow_pickle=False)


def _write_npz(path: str, vectors: np.ndarray, ids: list[str]) -> None:
    np.savez(path, ids=np.array(ids, dtype=str), vectors=vectors)


def _write_parquet(path: str, vectors: np.ndarray, ids: list[str]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"writing {path} needs pyarrow: pip install pyarrow") from None
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "vector": column}), path)


#: ``embed --output`` extension -> writer of (path, vectors, ids)
EMBED_WRITERS = {".npy": _write_npy, ".npz": _write_npz, ".parquet": _write_parquet}


def cmd_embed(args: argparse.Namespace) -> int:
    from .io import read_documents

    writer = EMBED_WRITERS.get(Path(args.output).suffix.lower())
    if writer is None:
        raise ValueError(f"--output {args.output}: use .npy (vectors), .npz (ids and vectors) "
                         "or .parquet (id and vector columns)")
    texts, ids, _ = read_documents(args.input, args.text_field, args.id_field, noun="texts")
    model = _load_model(args)
    vectors = model.encode(texts, args.instruction, batch_size=args.batch_size,
                           normalize=not args.no_normalize, show_progress_bar=True)
    writer(args.output, vectors, ids or [str(n) for n in range(len(texts))])
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


def _store_options(pairs: Sequence[str]) -> dict[str, str | int]:
    """``KEY=VALUE`` pairs of ``--store-option``; a value of digits is an integer."""
    options: dict[str, str | int] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--store-option takes KEY=VALUE, got {pair!r}")
        options[key] = int(value) if value.isdigit() else value
    return options


def cmd_index_create(args: argparse.Namespace) -> int:
    from .manifest import MANIFEST
    from .validation import check_instructions

    if (Path(args.path) / MANIFEST).exists():
        raise FileExistsError(f"{args.path} already holds an index: add documents with "
                              f"`inbedder index add {args.path} -i FILE`, instructions with "
                              f"`inbedder index add-instruction {args.path} INSTRUCTION`")
    check_instructions(args.instruction or ())  # before the model loads
    from .index import InstructionIndex
    from .stores import check_option_names

    options = _store_options(args.store_option or ())
    if args.factory:
        options["factory"] = args.factory
    check_option_names(args.backend, options)  # before the model loads
    model = _load_model(args)
    with InstructionIndex.create(args.path, model, instructions=args.instruction or (),
                                 backend=args.backend, store_options=options) as index:
        print(f"Created {index}")
    return 0


def cmd_index_add(args: argparse.Namespace) -> int:
    from .io import read_documents

    texts, ids, metadatas = read_documents(args.input, args.text_field, args.id_field)
    if not args.instruction and not _manifest_instructions(args.path):
        raise ValueError(f"{args.path} has no instruction yet: pass -q INSTRUCTION, or run "
                         f"`inbedder index add-instruction {args.path} INSTRUCTION` first")
    with _open_index(args.path) as index:
        index.add(texts, ids=ids, metadatas=metadatas, instructions=args.instruction or (),
                  batch_size=args.batch_size, show_progress_bar=True)
        print(f"Added {len(texts)} documents: {index}")
    return 0


def cmd_index_import(args: argparse.Namespace) -> int:
    from .manifest import read_manifest
    from .shards import shard_columns, shard_paths, shard_summary
    from .validation import check_positive_int

    _manifest_instructions(args.path)  # no index there: say so before the model loads
    check_positive_int(args.chunk_size, "--chunk-size")
    manifest = read_manifest(Path(args.path))
    files = shard_paths(args.sources)
    for file in files:  # a wrong shard is refused before the model loads
        shard_columns(file, shard_summary(file)[0], manifest, args.path)
    with _open_index(args.path) as index:
        report = index.import_embeddings(files, chunk_size=args.chunk_size, show_progress_bar=True)
        print(f"Imported {report.imported} documents ({report.skipped} already stored) "
              f"from {report.shards} shards: {index}")
    return 0


def cmd_embed_shards(args: argparse.Namespace) -> int:
    from .io import read_documents
    from .shards import write_embedding_shards
    from .validation import check_instructions, check_positive_int

    check_positive_int(args.rows_per_shard, "--rows-per-shard")
    check_instructions(args.instruction)
    texts, ids, metadatas = read_documents(args.input, args.text_field, args.id_field, noun="texts")
    records = [{"id": doc_id, "text": text, "metadata": metadata}
               for doc_id, text, metadata in zip(ids or [None] * len(texts), texts, metadatas)]
    written = write_embedding_shards(_load_model(args), records, args.instruction, args.output,
                                     rows_per_shard=args.rows_per_shard, batch_size=args.batch_size,
                                     show_progress_bar=True)
    print(f"Wrote {len(texts)} documents x {len(args.instruction)} instructions in {len(written)} shards "
          f"to {args.output}", file=sys.stderr)
    return 0


def cmd_embed_dataset(args: argparse.Namespace) -> int:
    import time

    from .distributed import embed_dataset, input_files, read_dataset, require_ray, write_dataset_shards
    from .shards import distinct_instructions, refuse_existing_shards, shard_summary
    from .validation import check_positive_int

    check_positive_int(args.rows_per_shard, "--rows-per-shard")
    check_positive_int(args.batch_size, "--batch-size")
    check_positive_int(args.concurrency, "--concurrency")
    distinct_instructions(args.instruction)
    refuse_existing_shards(Path(args.output))
    files = input_files(args.inputs)  # all before Ray starts
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=args.address)
    started = time.monotonic()
    embedded = embed_dataset(read_dataset(files), args.instruction, model=args.model, text_column=args.text_field,
                             id_column=args.id_field, batch_size=args.batch_size, concurrency=args.concurrency,
                             num_gpus=args.num_gpus, num_cpus=args.num_cpus, pooling=args.pooling, dtype=args.dtype)
    written = write_dataset_shards(embedded, args.output, rows_per_shard=args.rows_per_shard)
    rows = sum(shard_summary(path)[1] for path in written)
    print(f"Wrote {rows} documents x {len(args.instruction)} instructions in {len(written)} shards to {args.output} "
          f"({time.monotonic() - started:.1f} s, {args.concurrency} worker{'s' * (args.concurrency > 1)})",
          file=sys.stderr)
    return 0


def cmd_index_add_instruction(args: argparse.Namespace) -> int:

    if args.instruction in _manifest_instructions(args.path):
        raise ValueError(f"{args.instruction!r} is already an instruction of {args.path}")
    with _open_index(args.path) as index:
        index.add_instruction(args.instruction, args.query_instruction, show_progress_bar=True)
        print(f"Added instruction {args.instruction!r}: {index}")
    return 0


def cmd_index_remove_instruction(args: argparse.Namespace) -> int:

    _known_instruction(args.path, args.instruction)
    with _open_index(args.path) as index:
        index.remove_instruction(args.instruction)
        print(f"Removed instruction {args.instruction!r}: {index}")
    return 0


def cmd_index_delete(args: argparse.Namespace) -> int:

    _manifest_instructions(args.path)  # no index there: say so before the model loads
    with _open_index(args.path) as index:
        print(f"Deleted {index.delete(args.ids)} of {len(args.ids)} ids: {index}")
    return 0


def cmd_index_info(args: argparse.Namespace) -> int:
    from .manifest import read_manifest

    _manifest_instructions(args.path)  # no index there: say so before the model loads
    if args.no_model:
        print(json.dumps(read_manifest(Path(args.path)), indent=2))
        return 0
    with _open_index(args.path) as index:
        print(json.dumps(index.info(), indent=2, ensure_ascii=False))
    return 0


def cmd_index_verify(args: argparse.Namespace) -> int:

    _manifest_instructions(args.path)  # no index there: say so before the model loads
    with _open_index(args.path) as index:
        report = index.verify()
    print(json.dumps({"ok": True, **report}, indent=2, ensure_ascii=False))
    return 0


def _open_index(path: str):
    """Open the index at ``path`` with its model (imported here: checks come first)."""
    from .index import InstructionIndex

    return InstructionIndex.open(path)


def _manifest_instructions(path: str) -> list[str]:
    """The index's instructions, read from its manifest (no model load); a folder without
    an index says how to make one."""
    from .manifest import read_manifest

    try:
        manifest = read_manifest(Path(path))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}; create one with `inbedder index create {path} -q INSTRUCTION`") from None
    return [spec["instruction"] for spec in manifest["instructions"]]


def _known_instruction(path: str, instruction: str | None) -> str:
    """``instruction``, or the index's first one when it is ``None``; checked against the
    manifest before any model loads."""
    known = _manifest_instructions(path)
    if not known:
        raise ValueError(f"{path} has no instruction yet: run `inbedder index add-instruction {path} INSTRUCTION`")
    if instruction is None:
        return known[0]
    if instruction not in known:
        listing = "\n  ".join(repr(q) for q in known)
        raise KeyError(f"{instruction!r} is not an instruction of this index ({path}); add it with "
                       f"`inbedder index add-instruction {path} {json.dumps(instruction)}`. Its instructions:\n  {listing}")
    return instruction


def _queries(args: argparse.Namespace) -> list[str]:
    """The positional queries, then those of ``--queries`` (a file, or ``-`` for stdin)."""
    from .io import read_texts

    queries = list(args.query)
    if args.queries == "-":
        queries += [line for line in sys.stdin.read().split("\n") if line.strip()]
    elif args.queries:
        queries += read_texts(args.queries, args.text_field)
    if not queries:
        raise ValueError("no query: give QUERY arguments or --queries FILE (- reads stdin, one query a line)")
    if any(not query.strip() for query in queries):
        raise ValueError("a query is empty or blank")
    return queries


def cmd_search(args: argparse.Namespace) -> int:
    from .validation import check_k

    search_filter = _filter_option(args.filter)
    check_k(args.k)
    queries = _queries(args)
    if args.server:  # a running `inbedder serve`: no model load here
        from .server.client import InBedderClient

        if args.instruction is None:
            raise ValueError("with --server, name the instruction with -q")
        instruction = args.instruction
        with InBedderClient(args.server) as client:
            results = [(query, client.search(args.path, query, instruction, k=args.k, filter=search_filter))
                       for query in queries]
    else:
        instruction = _known_instruction(args.path, args.instruction)
        if args.instruction is None and not args.json:
            print(f"instruction: {instruction!r} (the index's first; choose another with -q)", file=sys.stderr)
        with _open_index(args.path) as index:
            results = [(query, index.search(query, instruction, k=args.k, filter=search_filter)) for query in queries]
    for query, hits in results:
        if args.json:
            for hit in hits:
                print(json.dumps({**({"query": query} if len(queries) > 1 else {}), "id": hit.id, "score": hit.score,
                                  "text": hit.text, "metadata": hit.metadata}, ensure_ascii=False))
            continue
        if len(queries) > 1:
            print(f"\nquery: {query}")
        shown = "".join(f" {field:12}" for field in args.show or ())
        print(f"{'score':>6}  {'id':12}{shown} text")
        for hit in hits:
            values = "".join(f" {str(hit.metadata.get(field, '')):12}" for field in args.show or ())
            print(f"{hit.score:6.3f}  {hit.id:12}{values} {hit.text}")
    return 0


def _filter_option(text: str | None) -> dict | None:
    """The ``--filter`` JSON, checked as the stores check it (before the model loads)."""
    from .io import parse_json
    from .stores.filters import FilterError, parse

    if text is None:
        return None
    value = parse_json(text, "--filter")
    try:
        parse(value)
    except FilterError as error:
        raise FilterError(f"--filter: {error}") from None
    return value


def cmd_train(args: argparse.Namespace) -> int:
    from .training import TrainingConfig, load_records, train

    sources = args.data or [None]
    records = [record for source in sources for record in load_records(source or _shipped_training_data())]
    config = TrainingConfig(
        epochs=args.epochs, learning_rate=args.learning_rate, effective_batch_size=args.effective_batch_size,
        micro_batch_size=args.micro_batch_size, max_steps=args.max_steps, save_steps=args.save_steps,
        lora=args.lora, lora_r=args.lora_r, lora_alpha=args.lora_alpha or 2 * args.lora_r,
        augment_wordings=args.augment_wordings, contrastive_weight=args.contrastive_weight,
        contrastive_temperature=args.contrastive_temperature, pool_layer=args.pool_layer,
    )
    result = train(args.base, records, args.output, config, device=args.device)
    print(f"Trained {result.steps} steps on {len(records)} records; final loss {result.losses[-1]:.4f}. "
          f"Load it with InBedder.from_pretrained({str(result.output_dir)!r})")
    return 0


def cmd_train_data_build(args: argparse.Namespace) -> int:
    from .training import write_records
    from .training_data import build_records

    records = build_records(seed=args.seed, per_question=args.wordings_per_question, free_form=not args.no_free_form,
                            list_options=args.list_options, options_skip=args.list_options_skip,
                            contrast_groups=args.contrast_groups)
    write_records(records, args.output)
    generated = sum(1 for record in records if record.qtype)
    print(f"Wrote {len(records)} records ({generated} from labelled texts, {len(records) - generated} free-form) "
          f"to {args.output}")
    return 0


def _shipped_training_data() -> str:
    from importlib import resources

    return str(resources.files("inbedder_retrieval.data").joinpath("train"))


def cmd_distill(args: argparse.Namespace) -> int:
    from .io import read_texts
    from .training import distill, write_records

    texts = read_texts(args.input, args.text_field)
    records = distill(_load_model(args), texts, args.instruction, max_words=args.max_words, batch_size=args.batch_size)
    write_records(records, args.output)
    print(f"Wrote {len(records)} records to {args.output}", file=sys.stderr)
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from .cluster import cluster_texts
    from .io import read_documents

    texts, ids, _ = read_documents(args.input, args.text_field, args.id_field, noun="texts")
    if args.k is not None and not 1 <= args.k <= len(texts):  # before the model loads
        raise ValueError(f"-k must be between 1 and the number of texts ({len(texts)}), got {args.k}")
    if args.k is None and not any(2 <= k < len(texts) for k in range(args.k_min, args.k_max + 1)):
        raise ValueError(f"no k in --k-min..--k-max ({args.k_min}..{args.k_max}) is between 2 and the number of "
                         f"texts ({len(texts)}) minus one: change them or give -k")
    result = cluster_texts(_load_model(args), texts, args.instruction, k=args.k,
                           k_values=range(args.k_min, args.k_max + 1), batch_size=args.batch_size)
    print(result.table())
    if result.silhouette_by_k:
        print("\nsilhouette by k: " + ", ".join(f"{k}: {s:.3f}" for k, s in result.silhouette_by_k.items()))
    if args.json:
        ids = ids or [str(n) for n in range(len(texts))]  # positions in the input when it has no ids
        Path(args.json).write_text(json.dumps({"ids": ids, **result.to_dict()}, indent=2, ensure_ascii=False),
                                   encoding="utf-8")
    if args.plot:
        result.plot(args.plot)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, markdown_table
    from .evaluation import baselines
    from .samples import load_sample

    unknown = [name for name in args.fixture or () if name not in FIXTURES]
    if unknown:
        raise ValueError(f"unknown fixture {unknown[0]!r}; shipped: {', '.join(FIXTURES)}")
    unknown = [name for name in args.hub or () if name not in HUB_SETS]
    if unknown:
        raise ValueError(f"unknown evaluation set {unknown[0]!r}; known: {', '.join(HUB_SETS)}")
    wordings = _wordings_file(args.unseen_file) if args.unseen and args.unseen_file else None  # before the model loads
    model = _load_model(args)
    embedders = {f"InBedder ({model.name})": baselines.inbedder(model)}
    if not args.no_baselines:
        from .embedder import load_reencoder

        minilm = load_reencoder(None, model.backend.device)
        embedders["all-MiniLM-L6-v2"] = baselines.sentence_embedder(minilm)
        embedders["all-MiniLM-L6-v2, '{instruction}: {text}'"] = baselines.prefixed_sentence_embedder(minilm)
        embedders["raw LM, mean-pooled, no prompt"] = baselines.raw_language_model(model)
    if args.hub:
        _eval_hub(embedders, args.hub, args.hub_limit)
        return 0
    if args.unseen:
        _eval_unseen(model, embedders, args.fixture or list(FIXTURES), args.batch_size, args.unseen_wordings,
                     args.unseen_per_cell, args.unseen_json, wordings, args.unseen_file)
        return 0
    rows = [
        evaluate(name, embed, fixture, load_sample(fixture), FIXTURES[fixture])
        for fixture in (args.fixture or list(FIXTURES))
        for name, embed in embedders.items()
    ]
    print(markdown_table(rows))
    if args.robustness or args.sts:
        _eval_robustness_and_sts(model, embedders, args.fixture or list(FIXTURES), args.robustness, args.sts)
    if args.retrieval:
        _eval_retrieval(model, embedders, args.fixture or list(FIXTURES), args.retrieval)
    return 0


def _eval_hub(embedders: dict, names: list[str], limit: int | None) -> None:
    """The reference's metric on its hub sets (downloaded through ``datasets``)."""
    from .evaluation.hub import KINDS, load_hub_set, score_hub_set

    print("| embedder | set | metric | score |\n|---|---|---|---|")
    for name in names:
        records = load_hub_set(name, limit=limit)
        for embedder, embed in embedders.items():
            score = score_hub_set(embed, name, records)
            print(f"| {embedder} | {name} | {KINDS[HUB_SETS[name].kind].metric} | {score:.3f} |", flush=True)


def _wordings_file(path: str) -> dict:
    """The wordings of ``--unseen-file``, checked against the shipped fixtures' aspects."""
    from .evaluation.unseen import parse_wordings
    from .samples import load_sample

    labelled = {name: [key for key in load_sample(name)[0] if key not in ("id", "text")] for name in FIXTURES}
    return parse_wordings(Path(path).read_text("utf-8"), path, labelled)


def _eval_unseen(model, embedders: dict, fixtures: list[str], batch_size: int, per_aspect: int | None,
                 per_cell: int | None, json_path: str | None, wordings: dict | None, wordings_file: str | None) -> None:
    """Triplet accuracy under held-out and seen instruction wordings (``evaluation.unseen``):
    the shipped ones, or ``wordings`` read from ``wordings_file`` (on the fixtures it covers)."""
    from dataclasses import asdict

    from .evaluation.unseen import (balanced_subset, embed_many_with, load_wordings, markdown_tables, score_wordings,
                                    summarise)
    from .samples import load_sample

    if wordings is not None:
        fixtures = [fixture for fixture in fixtures if any(entry.fixture == fixture for entry in wordings.values())]
        if not fixtures:
            raise ValueError(f"{wordings_file} has no wording for the fixture(s) asked for")
    else:
        wordings = load_wordings()
    many = {name: (lambda texts, qs: model.encode_many(texts, qs, batch_size=batch_size))
            if name.startswith("InBedder") else embed_many_with(embed) for name, embed in embedders.items()}
    scores: dict[str, list] = {name: [] for name in many}
    for fixture in fixtures:
        records = load_sample(fixture)
        if per_cell:
            records = balanced_subset(records, list(FIXTURES[fixture]), per_cell)
        aspects = [entry for entry in wordings.values() if entry.fixture == fixture]
        for name, embed_many in many.items():
            scores[name] += score_wordings(embed_many, records, aspects, per_aspect)
            print(f"scored {fixture} with {name}", file=sys.stderr, flush=True)
    print(markdown_tables({name: summarise(rows) for name, rows in scores.items()}))
    if json_path:
        Path(json_path).write_text(json.dumps({name: [asdict(row) for row in rows] for name, rows in scores.items()},
                                              indent=1, ensure_ascii=False), encoding="utf-8")


def _eval_robustness_and_sts(model, embedders: dict, fixtures: list[str], robust: bool, sts: bool) -> None:
    """The reference's robustness gaps (V-measure) and instruction-conditioned STS."""
    from .evaluation import instructed_sts, load_instruction_sets, robustness
    from .samples import load_sample

    instruction_aware = {name: embed for name, embed in embedders.items() if not name.startswith("raw LM")}
    if robust:
        print("\n| embedder | fixture/aspect | correct min-max | implicit min-max | incorrect min-max | "
              "min(correct)-max(incorrect) | min(implicit)-max(incorrect) |\n|---|---|---|---|---|---|---|")
        for key, sets in load_instruction_sets().items():
            fixture, aspect = key.split("/")
            if fixture not in fixtures:
                continue
            records = load_sample(fixture)
            texts, labels = [r["text"] for r in records], [r[aspect] for r in records]
            for name, embed in instruction_aware.items():
                many = model.encode_many if name.startswith("InBedder") else (
                    lambda t, qs, embed=embed: {q: embed(t, q) for q in qs})
                r = robustness(many, texts, labels, sets)
                print(f"| {name} | {key} | {r['correct min']:.3f}-{r['correct max']:.3f} | "
                      f"{r['implicit min']:.3f}-{r['implicit max']:.3f} | {r['incorrect min']:.3f}-{r['incorrect max']:.3f} | "
                      f"{r['min(correct) - max(incorrect)']:+.3f} | {r['min(implicit) - max(incorrect)']:+.3f} |", flush=True)
    if sts:
        pairs = load_sample("instructed_sts")
        print("\n| embedder | instructed STS (Spearman) |\n|---|---|")
        for name, embed in embedders.items():
            print(f"| {name} | {instructed_sts(embed, pairs):.3f} |")


def _eval_retrieval(model, embedders: dict, fixtures: list[str], queries: int, k: int = 10) -> None:
    """Recall@k and nDCG@k per aspect: InstructionIndex search for the InBedder, exact
    cosine search for the baselines."""
    import contextlib
    import tempfile

    from .evaluation import EmbedderSearch, aspect_retrieval
    from .index import InstructionIndex
    from .samples import load_sample

    print(f"\n| embedder | fixture | aspect | recall@{k} | ndcg@{k} |\n|---|---|---|---|---|")
    for fixture in fixtures:
        records = [{**record, "id": record.get("id", f"r{n}")} for n, record in enumerate(load_sample(fixture))]
        for name, embed in embedders.items():
            with tempfile.TemporaryDirectory() as folder:
                if name.startswith("InBedder"):
                    searcher = InstructionIndex.create(Path(folder) / "index", model,
                                                       instructions=list(FIXTURES[fixture].values()))
                    searcher.add([r["text"] for r in records], ids=[r["id"] for r in records])
                else:
                    searcher = contextlib.nullcontext(EmbedderSearch(embed, records))
                with searcher as search:
                    scores = aspect_retrieval(search, records, FIXTURES[fixture], k=k, queries=queries)
            for aspect, values in scores.items():
                print(f"| {name} | {fixture} | {aspect} | {values[f'recall@{k}']:.3f} | {values[f'ndcg@{k}']:.3f} |",
                      flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(_load_model(args) if args.model or args.pooling else None, path=args.path, k=args.k)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server.main import serve  # the server's dependencies load only here

    return serve(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inbedder",
        description="Instruction-aware text embedding: embed texts as answers to a question about them.",
    )
    parser.add_argument("--version", action="version", version=f"inbedder {__version__}")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="show the libraries' own logs and weight-loading bars (before COMMAND)")
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

    shards = commands.add_parser("embed-shards", help="embed texts under instructions into Parquet shards",
                                 description="Embed every text under each instruction and write embedding shards "
                                             "(id, text, metadata, one vector column per instruction) for "
                                             "`inbedder index import`.")
    _input_options(shards, repeatable=True)
    shards.add_argument("--output", "-o", required=True, help="output folder for the shards (must hold none yet)")
    shards.add_argument("--rows-per-shard", type=int, default=10_000, help="rows per shard file (default 10000)")
    _model_options(shards)
    shards.set_defaults(handler=cmd_embed_shards)

    dataset = commands.add_parser("embed-dataset", help="embed files under instructions on a Ray cluster into shards",
                                  description="Embed every row of the input files under each instruction with Ray "
                                              "Data (one model per worker) and write embedding shards for "
                                              "`inbedder index import`. Needs the ray extra.")
    dataset.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="input .jsonl, .parquet or .csv files (one kind), or folders of them")
    dataset.add_argument("--instruction", "-q", required=True, action="append",
                         help="a question asked about every text (repeatable)")
    dataset.add_argument("--output", "-o", required=True, help="output folder for the shards (must hold none yet)")
    dataset.add_argument("--text-field", default="text", help="column holding the text (default: text)")
    dataset.add_argument("--id-field", default="id", help="column holding each row's string id (default: id; required)")
    dataset.add_argument("--rows-per-shard", type=int, default=10_000, help="rows per shard file (default 10000)")
    dataset.add_argument("--address", default=None,
                         help="Ray cluster to join (auto: the one running here; default: start a local one)")
    dataset.add_argument("--concurrency", type=int, default=1, help="workers, each with its own model (default 1)")
    dataset.add_argument("--num-gpus", type=float, default=0,
                         help="GPUs per worker (0.5 puts two on a GPU; > 0 embeds on CUDA; default 0)")
    dataset.add_argument("--num-cpus", type=float, default=None, help="CPUs per worker (default: Ray's, 1)")
    dataset.add_argument("--model", default=None,
                         help="registry name, hub id or folder every node can load (default: the shipped model)")
    dataset.add_argument("--pooling", choices=("fst_gen", "avg_gen", "reencode"), default=None,
                         help="override the model's pooling")
    dataset.add_argument("--dtype", default=None,
                         help="float32, bfloat16 or float16 (default float32, on GPU workers too: indexes built on a CPU take its vectors)")
    dataset.add_argument("--batch-size", type=int, default=64, help="rows per worker call and per batch (default 64)")
    dataset.set_defaults(handler=cmd_embed_dataset)

    answer = commands.add_parser("answer", help="print the model's answer for each text (JSONL)",
                                 description="Generate the model's short answer to the instruction for each text.")
    _input_options(answer)
    answer.add_argument("--max-new-tokens", type=int, default=None, help="answer length limit")
    _model_options(answer)
    answer.set_defaults(handler=cmd_answer)

    demo = commands.add_parser("demo", help="index a shipped corpus under three instructions and search it",
                               description="Index 288 shipped support messages under three instructions "
                                           "and search one query under each.")
    _model_options(demo)
    demo.add_argument("--path", default=None, help="where to keep the demo index (default: a temporary folder)")
    demo.add_argument("-k", type=int, default=5, help="results per instruction (default 5)")
    demo.set_defaults(handler=cmd_demo)

    from .server.main import add_arguments as serve_arguments

    serve = commands.add_parser("serve", help="serve embeddings and indexes over HTTP (needs the server extra)",
                                description="An OpenAI-compatible embeddings API, index search and writes, "
                                            "/metrics and an explorer page at /.")
    serve_arguments(serve)
    serve.set_defaults(handler=cmd_serve)
    train = commands.add_parser("train", help="fine-tune a causal or masked LM into an InBedder",
                                description="Fine-tune on (input, instruction, output) records: the shipped set by "
                                            "default, or JSONL files / datasets hub ids given with --data.")
    train.add_argument("--base", default="smollm2-135m-instruct", help="model to fine-tune (registry name, hub id, folder)")
    train.add_argument("--data", action="append", help="JSONL file or datasets id (repeatable; default: the shipped set)")
    train.add_argument("--output", "-o", required=True, help="output folder (resumes from its newest checkpoint)")
    train.add_argument("--epochs", type=float, default=1.0, help="epochs (default 1)")
    train.add_argument("--learning-rate", type=float, default=2e-5, help="peak learning rate (default 2e-5)")
    train.add_argument("--effective-batch-size", type=int, default=64, help="batch per optimizer step (default 64)")
    train.add_argument("--micro-batch-size", type=int, default=8, help="batch per forward pass (default 8)")
    train.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    train.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps (default 50)")
    train.add_argument("--lora", action="store_true", help="train a LoRA adapter instead of all weights")
    train.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default 16)")
    train.add_argument("--lora-alpha", type=int, default=None, help="LoRA alpha (default 2 x rank)")
    train.add_argument("--augment-wordings", action="store_true",
                       help="ask each record with one of its 'instructions' wordings, a new draw each epoch")
    train.add_argument("--contrastive-weight", type=float, default=0.0,
                       help="weight of the in-batch contrastive term on the pooled vector (default 0: the reference)")
    train.add_argument("--contrastive-temperature", type=float, default=0.05, help="its temperature (default 0.05)")
    train.add_argument("--pool-layer", type=int, default=-1,
                       help="hidden-state layer pooled by the contrastive term and recorded for embedding (default -1)")
    train.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if present)")
    train.set_defaults(handler=cmd_train)

    train_data = commands.add_parser("train-data", help="build training records from the shipped labelled texts",
                                     description="Pair the shipped labelled texts (data/train_v2) with the question "
                                                 "wordings of each aspect, mixed with the free-form records.")
    train_data_commands = train_data.add_subparsers(dest="train_data_command", required=True)
    build = train_data_commands.add_parser("build", help="write the v2 training records as JSONL")
    build.add_argument("--output", "-o", required=True, help="output .jsonl")
    build.add_argument("--seed", type=int, default=0, help="seed of the pairing and the shuffle (default 0)")
    build.add_argument("--wordings-per-question", type=int, default=3,
                       help="records per (text, aspect), each in another wording (default 3)")
    build.add_argument("--no-free-form", action="store_true", help="leave out the free-form records of data/train")
    build.add_argument("--list-options", type=int, default=0, metavar="N",
                       help="also N records per (text, aspect) whose question lists 3-4 candidate answers "
                            "(default 0: the v2 records as they were)")
    build.add_argument("--list-options-skip", action="append", default=[], metavar="TYPE",
                       help="a question type that gets no option-listing records (repeatable; e.g. polarity)")
    build.add_argument("--contrast-groups", action="store_true",
                       help="key the contrastive term on answer families where a type has them (emotions: "
                            "'furious' and 'annoyed' are both 'anger')")
    build.set_defaults(handler=cmd_train_data_build)

    distill = commands.add_parser("distill", help="make training records from your corpus with a teacher model",
                                  description="Self-distillation: a chat model answers your questions about your "
                                              "texts tersely; the records feed `inbedder train --data`.")
    _input_options(distill, repeatable=True)  # several questions per text teach instruction-dependence
    distill.add_argument("--output", "-o", required=True, help="output .jsonl of records")
    distill.add_argument("--max-words", type=int, default=3, help="longest answer kept (default 3 words)")
    _model_options(distill)
    distill.set_defaults(handler=cmd_distill)

    cluster = commands.add_parser("cluster", help="cluster texts under an instruction and explain the clusters",
                                  description="k-means on the instruction's vectors; each cluster is explained by "
                                              "the top TF-IDF terms of the model's answers, its common answers and "
                                              "typical texts.")
    _input_options(cluster)
    cluster.add_argument("-k", type=int, default=None, help="number of clusters (default: best silhouette)")
    cluster.add_argument("--k-min", type=int, default=2, help="smallest k tried (default 2)")
    cluster.add_argument("--k-max", type=int, default=10, help="largest k tried (default 10)")
    cluster.add_argument("--json", default=None, help="write the result as JSON to this path")
    cluster.add_argument("--plot", default=None, help="save a 2-D projection coloured by cluster (PNG)")
    _model_options(cluster)
    cluster.set_defaults(handler=cmd_cluster)

    evaluation = commands.add_parser("eval", help="instruction awareness on the shipped fixtures, with baselines",
                                     description="Triplet accuracy and k-means V-measure per aspect (and their "
                                                 "harmonic means) for the model and three baselines.")
    evaluation.add_argument("--fixture", action="append",
                            help="a shipped fixture (repeatable; default: all): " + ", ".join(FIXTURES))
    evaluation.add_argument("--no-baselines", action="store_true", help="evaluate only the model")
    evaluation.add_argument("--robustness", action="store_true",
                            help="V-measure under paraphrased, implicit and wrong-aspect instructions")
    evaluation.add_argument("--sts", action="store_true", help="Spearman on instruction-conditioned sentence pairs")
    evaluation.add_argument("--retrieval", type=int, default=0, metavar="N",
                            help="also measure recall@10 / nDCG@10 of index search with N queries per fixture")
    evaluation.add_argument("--hub", action="append", metavar="SET",
                            help="instead of the fixtures, a reference set from the hub (needs the hub and the "
                                 "hub-data extra): " + ", ".join(HUB_SETS))
    evaluation.add_argument("--unseen", action="store_true",
                            help="instead of the fixtures' own instructions, 20 wordings per aspect, half of them "
                                 "held out of all training data: mean and min triplet accuracy per aspect, HM per fixture")
    evaluation.add_argument("--unseen-wordings", type=int, default=None, metavar="N",
                            help="with --unseen, only the first N held-out and N seen wordings per aspect (quick look)")
    evaluation.add_argument("--unseen-per-cell", type=int, default=None, metavar="N",
                            help="with --unseen, only the first N texts of each pair of the fixture's two main labels")
    evaluation.add_argument("--unseen-json", default=None, metavar="PATH",
                            help="with --unseen, also write every wording's score to this JSON file")
    evaluation.add_argument("--unseen-file", default=None, metavar="PATH",
                            help="with --unseen, score the wordings of this JSON file (the format of the shipped "
                                 "unseen_wordings.json: {\"fixture/aspect\": {\"contrast\": ..., \"held_out\": [...], "
                                 "\"seen\": [...]}}) instead of the shipped ones, on the fixtures it covers")
    evaluation.add_argument("--hub-limit", type=int, default=None, metavar="N", help="use the first N rows of each set")
    _model_options(evaluation)
    evaluation.set_defaults(handler=cmd_eval)

    index = commands.add_parser("index", help="create and update instruction-aware indexes",
                                description="Create, fill and inspect an instruction-aware index.")
    actions = index.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create an empty index", description="Create an empty index in PATH.")
    create.add_argument("path", help="index folder")
    create.add_argument("--backend", choices=("faiss", "qdrant"), default="faiss", help="vector store (default faiss)")
    create.add_argument("--instruction", "-q", action="append", help="an instruction (repeatable)")
    create.add_argument("--factory", default=None, help="FAISS index_factory string (default Flat; e.g. HNSW32)")
    create.add_argument("--store-option", action="append", metavar="KEY=VALUE",
                        help="a store option (repeatable), e.g. url=http://host:6333 shard_number=4 "
                             "replication_factor=2 for a Qdrant cluster; see the README's store options")
    _model_options(create)
    create.set_defaults(handler=cmd_index_create)

    add = actions.add_parser("add", help="add or replace documents from a .jsonl file",
                             description="Add documents ({'id', 'text', ...} per line; other fields become metadata).")
    add.add_argument("path", help="index folder")
    add.add_argument("--input", "-i", required=True, help=INPUT_HELP)
    add.add_argument("--text-field", default="text", help="field (column) holding the text (default text)")
    add.add_argument("--id-field", default="id", help="field holding the id (default id; ids are generated if absent)")
    add.add_argument("--instruction", "-q", action="append", help="also add this instruction (repeatable)")
    add.add_argument("--batch-size", type=int, default=64, help="documents per batch (default 64)")
    add.set_defaults(handler=cmd_index_add)

    import_ = actions.add_parser("import", help="import precomputed vectors from embedding shards",
                                 description="Import documents and their vectors from embedding shards (Parquet "
                                             "files made by `inbedder embed-shards`) without running the model. "
                                             "Running it again resumes: stored documents are skipped.")
    import_.add_argument("path", help="index folder")
    import_.add_argument("sources", nargs="+", metavar="SHARD_OR_DIR", help="shard files, or folders of *.parquet shards")
    import_.add_argument("--chunk-size", type=int, default=1024,
                         help="rows per read and per store transaction (default 1024)")
    import_.set_defaults(handler=cmd_index_import)

    add_instruction = actions.add_parser("add-instruction", help="embed the stored corpus under a new instruction",
                                         description="Add an instruction and embed every stored document under it.")
    add_instruction.add_argument("path", help="index folder")
    add_instruction.add_argument("instruction", help="the new instruction")
    add_instruction.add_argument("--query-instruction", default=None, help="instruction for queries (default: the same)")
    add_instruction.set_defaults(handler=cmd_index_add_instruction)

    remove_instruction = actions.add_parser("remove-instruction", help="drop an instruction and its vectors",
                                            description="Remove an instruction; documents stay.")
    remove_instruction.add_argument("path", help="index folder")
    remove_instruction.add_argument("instruction", help="the instruction to remove")
    remove_instruction.set_defaults(handler=cmd_index_remove_instruction)

    delete = actions.add_parser("delete", help="delete documents by id", description="Delete documents by id.")
    delete.add_argument("path", help="index folder")
    delete.add_argument("ids", nargs="+", help="document ids")
    delete.set_defaults(handler=cmd_index_delete)

    info = actions.add_parser("info", help="print the manifest and counts", description="Print the index manifest.")
    info.add_argument("path", help="index folder")
    info.add_argument("--no-model", action="store_true", help="print the manifest without loading the model")
    info.set_defaults(handler=cmd_index_info)
    verify = actions.add_parser("verify", help="check every file of an index (reads all of it)",
                                description="Check the database, the derived files and their agreement; "
                                            "exit 2 naming the damaged file if any.")
    verify.add_argument("path", help="index folder")
    verify.set_defaults(handler=cmd_index_verify)

    search = commands.add_parser("search", help="search an index under one instruction",
                                 description="Search PATH for each QUERY as seen through INSTRUCTION "
                                             "(the model loads once for all queries).")
    search.add_argument("path", help="index folder (with --server: the index's name on the server)")
    search.add_argument("query", nargs="*", help="query texts")
    search.add_argument("--queries", default=None, metavar="FILE",
                        help="more queries from a file (" + INPUT_HELP + "), or - for stdin (one a line)")
    search.add_argument("--text-field", default="text", help="field (column) holding the query in --queries")
    search.add_argument("--server", default=None, metavar="URL",
                        help="ask a running `inbedder serve` at URL instead of loading the model "
                             "(API key from $INBEDDER_API_KEY)")
    search.add_argument("--instruction", "-q", default=None,
                        help="one of the index's instructions (default: its first)")
    search.add_argument("--show", action="append", metavar="FIELD", help="also print this metadata field (repeatable)")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--filter", default=None, help='metadata filter as JSON, e.g. \'{"mood": "angry"}\'')
    search.add_argument("--json", action="store_true", help="print JSON lines")
    search.set_defaults(handler=cmd_search)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:  # read by huggingface_hub / transformers when they are first imported
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        return args.handler(args)
    except INPUT_ERRORS as error:
        # a KeyError's str() is the repr of its message: print the message itself
        message = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else error
        print(f"inbedder: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
