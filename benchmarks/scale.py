"""Scale: bulk import and search of N synthetic documents per backend (issue 15, item 3).

N documents with short texts and two indexed metadata fields (``rare`` = i % 100, a filter
on one value matches 1%; ``half`` = "a"/"b", 50%), two instructions, unit float32 vectors
of dimension 576 drawn around 1,000 Gaussian centres (so ANN recall means something).
The vectors are written once as embedding shards (Parquet), then each backend imports
them with ``InstructionIndex.import_embeddings`` in a child process (a stand-in model whose
``encode`` raises: the model is never called). Per backend: import time and vectors/s per
instruction, disk size, the importing process's peak RSS (``VmHWM``), open time in a fresh
process, search p50/p99 (k=10, one instruction) with recall@10 against exact search
(numpy), filtered search (1% and 50%), and recovery: an import SIGKILLed midway, then
re-open + the same import again (it resumes), with the final count checked.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scale.py 100000 \\
        [--backends faiss-flat faiss-hnsw32 faiss-ivfpq qdrant] [--queries 200] [--workdir DIR] \\
        [--ef-search 128] [--nprobe 16] [--rerank 10]

``--ef-search`` / ``--nprobe`` / ``--rerank`` set the store options of the HNSW / IVF /
PQ backends (default: the store's defaults); they are recorded in the index like every
store option. ``--sweep KEY=V1,V2,...`` (e.g. ``ef_search=128,256,512``) searches the same
index again, opened with each value as a search-time override (no re-import): one extra
result per value under ``"sweep"``. ``--skip-recovery`` leaves out the kill-and-resume run.

IVF-PQ is "IVF256,PQ48np" ("np": no polysemous training, which takes minutes with 48
sub-quantizers). It is trained when its first vectors are committed, so the first shard
(10,000 rows) is imported as one chunk: that is its training sample.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from inbedder_retrieval.index import InstructionIndex
from inbedder_retrieval.shards import shard_header, shard_table, write_shard
from inbedder_retrieval.stores import Document

DIM, CENTRES, SPREAD, ROWS_PER_SHARD, K = 576, 1000, 0.8, 10_000, 10
INSTRUCTIONS = ["What is the topic?", "How does the customer feel?"]
FIELDS = {"rare": "number", "half": "keyword"}
FILTERS = {"rare == 1 (1%)": {"rare": 1}, "half == 'a' (50%)": {"half": "a"}}
BACKENDS = {
    "faiss-flat": ("faiss", {"factory": "Flat"}),
    "faiss-hnsw32": ("faiss", {"factory": "HNSW32"}),
    "faiss-ivfpq": ("faiss", {"factory": "IVF256,PQ48np"}),
    "qdrant": ("qdrant", {}),
}


class VectorsOnly:
    """A stand-in model with a model record and no weights: ``encode`` raises."""

    name, fingerprint, pooling, dim, dtype = "synthetic-576", "synthetic-576-v1", "none", DIM, "float32"
    description = SimpleNamespace(layer=None)

    def check_instruction(self, instruction: str) -> str:
        return instruction

    def encode(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise RuntimeError("the model was called during a benchmark that must not call it")


# -- data ----------------------------------------------------------------------------------
def points(rng: np.random.Generator, centres: np.ndarray, count: int) -> np.ndarray:
    """``count`` unit vectors, each a random centre plus Gaussian noise."""
    chosen = centres[rng.integers(0, len(centres), count)]
    noisy = chosen + rng.normal(scale=SPREAD / np.sqrt(DIM), size=chosen.shape).astype("float32")
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype("float32")


def unit_centres(rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(size=(CENTRES, DIM)).astype("float32")
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def write_data(n: int, queries: int, folder: Path) -> None:
    """Shards of ``n`` documents under both instructions, ``queries.npy`` (held-out points
    of instruction 0's distribution) and ``base0.npy`` (instruction 0's vectors, for exact search)."""
    rng = np.random.default_rng(0)
    centres = [unit_centres(rng) for _ in INSTRUCTIONS]
    header = shard_header(VectorsOnly(), INSTRUCTIONS)
    shards = folder / "shards"
    shards.mkdir(parents=True)
    base = np.lib.format.open_memmap(folder / "base0.npy", mode="w+", dtype="float32", shape=(n, DIM))
    for number, start in enumerate(range(0, n, ROWS_PER_SHARD)):
        ids = range(start, min(start + ROWS_PER_SHARD, n))
        documents = [Document(f"doc-{i}", f"review {i} of item {i % 997}", {"rare": i % 100, "half": "ab"[i % 2]})
                     for i in ids]
        vectors = {q: points(rng, c, len(ids)) for q, c in zip(INSTRUCTIONS, centres)}
        base[start : start + len(ids)] = vectors[INSTRUCTIONS[0]]
        write_shard(shards, number, shard_table(header, documents, vectors))
    base.flush()
    np.save(folder / "queries.npy", points(rng, centres[0], queries))


def exact_top(folder: Path, n: int, mask: np.ndarray | None) -> np.ndarray:
    """Exact top-K row numbers of each query (cosine), among rows where ``mask`` holds."""
    base, queries = np.load(folder / "base0.npy", mmap_mode="r"), np.load(folder / "queries.npy")
    best = np.full((len(queries), K), -np.inf, dtype="float32"), np.zeros((len(queries), K), dtype="int64")
    for start in range(0, n, 100_000):
        scores = queries @ np.asarray(base[start : start + 100_000]).T
        if mask is not None:
            scores[:, ~mask[start : start + 100_000]] = -np.inf
        rows = np.arange(start, start + scores.shape[1])
        scores = np.concatenate([best[0], scores], axis=1)
        rows = np.concatenate([best[1], np.broadcast_to(rows, (len(queries), len(rows)))], axis=1)
        top = np.argsort(-scores, axis=1)[:, :K]
        best = np.take_along_axis(scores, top, 1), np.take_along_axis(rows, top, 1)
    return best[1]


# -- child processes -----------------------------------------------------------------------
def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def do_import(index: InstructionIndex, shards: Path, name: str) -> dict[str, int]:
    """The import; for IVF-PQ the first shard goes in one chunk (its training sample)."""
    files = sorted(shards.glob("*.parquet"))
    totals = {"imported": 0, "skipped": 0}
    parts = [([files[0]], ROWS_PER_SHARD), (files[1:], None)] if name == "faiss-ivfpq" else [(files, None)]
    for sources, chunk in parts:
        if sources:
            report = index.import_embeddings(sources, **({"chunk_size": chunk} if chunk else {}))
            totals = {"imported": totals["imported"] + report.imported, "skipped": totals["skipped"] + report.skipped}
    return totals


def child_import(name: str, target: Path, shards: Path, options: dict[str, Any]) -> dict[str, Any]:
    backend = BACKENDS[name][0]
    index = InstructionIndex.create(target, VectorsOnly(), instructions=INSTRUCTIONS, backend=backend,
                                    store_options=options, indexed_fields=FIELDS)
    print("importing", flush=True)  # killed_import times its kill from here
    started = time.perf_counter()
    report = do_import(index, shards, name)
    seconds = time.perf_counter() - started
    count = len(index)
    index.close()
    return {"seconds": seconds, **report, "count": count, "peak_rss_mib": peak_rss_mib()}


def child_resume(name: str, target: Path, shards: Path) -> dict[str, Any]:
    started = time.perf_counter()
    index = InstructionIndex.open(target, VectorsOnly())
    opened = time.perf_counter()
    before = len(index)
    report = do_import(index, shards, name)
    done = time.perf_counter()
    count = len(index)
    index.close()
    return {"open_s": opened - started, "import_s": done - opened, "total_s": done - started, "count_before": before,
            **report, "count": count}


def child_search(target: Path, folder: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    queries = np.load(folder / "queries.npy")
    started = time.perf_counter()
    index = InstructionIndex.open(target, VectorsOnly(), store_options=overrides)
    result: dict[str, Any] = {"open_s": time.perf_counter() - started}
    for label, filter in [("plain", None), *FILTERS.items()]:
        index.search_by_vector(queries[0], INSTRUCTIONS[0], K, filter)  # warm-up
        latencies, found = [], []
        for query in queries:
            tick = time.perf_counter()
            hits = index.search_by_vector(query, INSTRUCTIONS[0], K, filter)
            latencies.append(time.perf_counter() - tick)
            found.append([int(hit.id.removeprefix("doc-")) for hit in hits])
        result[label] = {"ms": [s * 1000 for s in latencies], "rows": found}
    index.close()
    return result


def run_child(*args: str, timeout: float | None = None) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode:
        raise RuntimeError(f"child {args} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def killed_import(name: str, target: Path, shards: Path, after: float, options: dict[str, Any]) -> None:
    """Start an import in a child and SIGKILL it ``after`` seconds into the import."""
    child = subprocess.Popen([sys.executable, __file__, "--child", "import", name, str(target), str(shards),
                              json.dumps(options)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if child.stdout is None or child.stdout.readline().strip() != "importing":
        raise RuntimeError(f"the import of {name} failed before it started")
    try:
        child.wait(timeout=after)
        raise RuntimeError(f"the import of {name} ended before the kill at {after:.1f} s")
    except subprocess.TimeoutExpired:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()


# -- the parent ----------------------------------------------------------------------------
def disk_mib(folder: Path) -> float:
    return sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file()) / 2**20


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth.tolist())]))


def backend_options(name: str, ef_search: int | None, nprobe: int | None, rerank: int | None) -> dict[str, Any]:
    options = dict(BACKENDS[name][1])
    if ef_search is not None and "HNSW" in options.get("factory", ""):
        options["ef_search"] = ef_search
    if nprobe is not None and "IVF" in options.get("factory", ""):
        options["nprobe"] = nprobe
    if rerank is not None and "PQ" in options.get("factory", ""):
        options["rerank"] = rerank
    return options


def searched_row(searched: dict[str, Any], truths: dict[str, np.ndarray]) -> dict[str, Any]:
    """p50 / p99 ms and recall@10 per filter of one search child's result."""
    return {label: {"p50_ms": percentile(searched[label]["ms"], 50), "p99_ms": percentile(searched[label]["ms"], 99),
                    "recall_at_10": recall(searched[label]["rows"], truths[label])} for label in ("plain", *FILTERS)}


def measure(name: str, n: int, folder: Path, truths: dict[str, np.ndarray], options: dict[str, Any],
            sweep: dict[str, list[int]], recovery: bool = True) -> dict[str, Any]:
    shards, target = folder / "shards", folder / name
    shutil.rmtree(target, ignore_errors=True)
    imported = run_child("import", name, str(target), str(shards), json.dumps(options))
    if imported["count"] != n:
        raise RuntimeError(f"{name}: {imported['count']} documents after import, expected {n}")
    row: dict[str, Any] = {"backend": name, "options": options, "n": n, "import_s": imported["seconds"],
                           "vectors_per_s_per_instruction": n / imported["seconds"],
                           "peak_rss_mib": imported["peak_rss_mib"], "disk_mib": disk_mib(target)}
    if name.startswith("faiss"):
        row["sqlite_mib"] = disk_mib(target / "faiss-store") - disk_mib(target / "faiss-store" / "faiss")
    searched = run_child("search", str(target), str(folder))
    row["open_s"] = searched["open_s"]
    row.update(searched_row(searched, truths))
    for key, values in sweep.items():
        row.setdefault("sweep", []).extend(
            {key: value, **searched_row(run_child("search", str(target), str(folder), json.dumps({key: value})), truths)}
            for value in values)
    shutil.rmtree(target)
    if not recovery:
        return row
    killed_import(name, target, shards, imported["seconds"] / 2, options)
    resumed = run_child("resume", name, str(target), str(shards))
    if resumed["count"] != n:
        raise RuntimeError(f"{name}: {resumed['count']} documents after the resumed import, expected {n}")
    row["recovery"] = resumed
    shutil.rmtree(target)
    return row


def _searches(r: dict[str, Any]) -> str:
    """The p50 / p99 / recall cells of the plain, 1% and 50% searches."""
    rare, half = r["rare == 1 (1%)"], r["half == 'a' (50%)"]
    return (f"{r['plain']['p50_ms']:.2f} | {r['plain']['p99_ms']:.2f} | {r['plain']['recall_at_10']:.3f} | "
            f"{rare['p50_ms']:.2f} / {rare['p99_ms']:.2f} ({rare['recall_at_10']:.3f}) | "
            f"{half['p50_ms']:.2f} / {half['p99_ms']:.2f} ({half['recall_at_10']:.3f})")


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| backend | N | import s | vectors/s per instruction | disk MiB (SQLite) | peak RSS MiB | open s | "
            "p50 ms | p99 ms | recall@10 | 1% p50 / p99 ms (recall) | 50% p50 / p99 ms (recall) | killed at | recovery: open + "
            "resume s (rows before / imported / skipped) | load average |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        rec = r.get("recovery")
        sqlite = f" ({r['sqlite_mib']:,.0f})" if "sqlite_mib" in r else ""
        recovery = (f"{r['import_s'] / 2:.0f} s | {rec['open_s']:.2f} + {rec['import_s']:.1f} ({rec['count_before']:,} / "
                    f"{rec['imported']:,} / {rec['skipped']:,})") if rec else "- | not run"
        name = f"{r['backend']}{''.join(f', {k} {v}' for k, v in r.get('options', {}).items() if k != 'factory')}"
        lines.append(
            f"| {name} | {r['n']:,} | {r['import_s']:.1f} | {r['vectors_per_s_per_instruction']:,.0f} | "
            f"{r['disk_mib']:,.0f}{sqlite} | {r['peak_rss_mib']:,.0f} | {r['open_s']:.2f} | {_searches(r)} | {recovery} | "
            f"{r['load']} |")
        for swept in r.get("sweep", []):
            setting = ", ".join(f"{k} {v}" for k, v in swept.items() if k not in ("plain", *FILTERS))
            lines.append(f"| {r['backend']}, {setting} (same index, search only) | | | | | | | {_searches(swept)} | | | |")
    return "\n".join(lines) + f"\n\nraw vectors: {rows[0]['n'] * DIM * 4 / 2**20:,.0f} MiB per instruction"


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, args = sys.argv[2], sys.argv[3:]
        if kind == "import":
            result = child_import(args[0], Path(args[1]), Path(args[2]), json.loads(args[3]))
        elif kind == "resume":
            result = child_resume(args[0], Path(args[1]), Path(args[2]))
        else:
            result = child_search(Path(args[0]), Path(args[1]), json.loads(args[2]) if len(args) > 2 else None)
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("--backends", nargs="+", choices=list(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path, help="where to write the results (default: workdir/scale-N.json)")
    parser.add_argument("--ef-search", type=int, help="the HNSW backends' ef_search store option")
    parser.add_argument("--nprobe", type=int, help="the IVF backends' nprobe store option")
    parser.add_argument("--rerank", type=int, help="the PQ backends' rerank store option")
    parser.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                        help="search the imported index again with each value of a search-time store option")
    parser.add_argument("--skip-recovery", action="store_true", help="leave out the kill-and-resume run")
    args = parser.parse_args()
    sweep = {key: [int(v) for v in values.split(",")] for key, _, values in (item.partition("=") for item in args.sweep)}
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="inbedder-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "queries.npy").exists():
        started = time.perf_counter()
        write_data(args.n, args.queries, folder)
        print(f"shards written in {time.perf_counter() - started:.1f} s to {folder}", flush=True)
    rare = np.arange(args.n) % 100 == 1
    truths = {"plain": exact_top(folder, args.n, None), "rare == 1 (1%)": exact_top(folder, args.n, rare),
              "half == 'a' (50%)": exact_top(folder, args.n, np.arange(args.n) % 2 == 0)}
    rows: list[dict[str, Any]] = []
    output = args.json or folder / f"scale-{args.n}.json"
    for name in args.backends:
        rows.append(measure(name, args.n, folder, truths, backend_options(name, args.ef_search, args.nprobe, args.rerank),
                            sweep, recovery=not args.skip_recovery))
        rows[-1]["load"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        output.write_text(json.dumps(rows, indent=1))  # after each backend: a cut-short run keeps what it measured
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
