"""Soak trials for the index's guarantees (issue 12), too slow for the test suite.

1. ``long-add``: the shipped default model adds N texts under 3 instructions (minutes on
   2 cores) while a second process opens the index and searches in a tight loop, and a
   third tries to write with ``lock_timeout=1``. Prints the reader's searches and errors
   and how long the blocked writer waited.
2. ``kills``: for each backend and each write (add, delete, add_instruction,
   remove_instruction) on a tiny random-weight model, TRIALS writes are SIGKILLed after a
   random delay; after each kill the index must be exactly as before or after the write.

    .venv/bin/python benchmarks/reliability_soak.py long-add [N]
    .venv/bin/python benchmarks/reliability_soak.py kills [TRIALS] [BACKENDS] [WRITES]   (comma-separated)
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from inbedder_retrieval import InBedder  # noqa: E402
from inbedder_retrieval.index import InstructionIndex  # noqa: E402

INSTRUCTIONS = ["How does the customer feel?", "Which product is discussed?", "What does the customer want?"]


def spawn(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def long_add(count: int) -> None:
    from inbedder_retrieval.samples import load_sample

    texts = [row["text"] for row in load_sample("support_messages")]
    texts = [f"{texts[i % len(texts)]} (copy {i // len(texts)})" for i in range(count)]
    root = Path(tempfile.mkdtemp()) / "idx"
    with InstructionIndex.create(root, instructions=INSTRUCTIONS) as index:
        index.add(texts[:24], ids=[f"seed-{i}" for i in range(24)])
    stop = root.parent / "stop"
    reader = spawn(f"""
        import pathlib, time
        from inbedder_retrieval.index import InstructionIndex
        index = InstructionIndex.open({str(root)!r})
        searches = errors = 0
        sizes = set()
        while not pathlib.Path({str(stop)!r}).exists():
            try:
                index.search("the parcel never came", {INSTRUCTIONS[1]!r}, k=5)
                sizes.add(len(index))
                searches += 1
            except Exception as error:
                errors += 1
                print("reader error:", type(error).__name__, error)
        print(f"reader: {{searches}} searches, {{errors}} errors, sizes seen {{sorted(sizes)}}")
    """)
    writer = spawn(f"""
        import time
        from inbedder_retrieval.index import InstructionIndex
        index = InstructionIndex.open({str(root)!r})
        texts = {texts[24:]!r}
        started = time.time()
        index.add(texts, ids=[f"doc-{{i}}" for i in range(len(texts))])
        print(f"writer: added {{len(texts)}} texts x {len(INSTRUCTIONS)} instructions in {{time.time() - started:.0f}} s")
    """)
    time.sleep(30)  # the writer is embedding by now
    blocked = spawn(f"""
        import time
        from inbedder_retrieval.errors import IndexLockedError
        from inbedder_retrieval.index import InstructionIndex
        started = time.time()
        index = InstructionIndex.open({str(root)!r}, lock_timeout=1)
        opened = time.time() - started
        try:
            index.add(["blocked"], ids=["blocked"])
            print("second writer: NOT blocked")
        except IndexLockedError as error:
            print(f"second writer: opened in {{opened:.1f}} s, IndexLockedError after {{time.time() - started - opened:.1f}} s")
    """)
    print(blocked.communicate()[0].strip())
    print(writer.communicate()[0].strip())
    stop.touch()
    print(reader.communicate()[0].strip())


WRITES = {
    "add": "index.add([f'new {i}' for i in range(40)], ids=[f'new-{i}' for i in range(40)])",
    "delete": "index.delete([f'doc-{i}' for i in range(16)])",
    "add_instruction": "index.add_instruction('What does the customer want?')",
    "remove_instruction": "index.remove_instruction('Which product is discussed?')",
}


def kills(trials: int, backends: tuple[str, ...] = ("faiss", "qdrant"), writes: tuple[str, ...] = tuple(WRITES)) -> None:
    from conftest import save_tiny_model

    folder = Path(tempfile.mkdtemp())
    model = InBedder.from_pretrained(save_tiny_model("llama", folder / "model"), device="cpu")
    texts = [f"message number {i} about item {i % 3}" for i in range(24)]
    rng = random.Random(0)
    for backend in backends:
        for write in writes:
            call = WRITES[write]
            outcomes = {"before": 0, "after": 0, "BROKEN": 0}
            for trial in range(trials):
                root = folder / f"{backend}-{write}-{trial}"
                with InstructionIndex.create(root, model, backend=backend, instructions=INSTRUCTIONS[:2]) as index:
                    index.add(texts, ids=[f"doc-{i}" for i in range(24)])
                process = spawn(f"""
                    import pathlib
                    from inbedder_retrieval.index import InstructionIndex
                    index = InstructionIndex.open({str(root)!r})
                    pathlib.Path({str(root / 'started')!r}).touch()
                    {call}
                    index.close()
                    pathlib.Path({str(root / 'done')!r}).touch()
                """)
                while not (root / "started").exists() and process.poll() is None:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0, 0.6))
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                with InstructionIndex.open(root, model) as index:
                    outcomes[_state(index, write)] += 1
            print(f"{backend:7s} {write:19s} {trials} kills: {outcomes}")


def _state(index: InstructionIndex, write: str) -> str:
    """'before', 'after', or 'BROKEN' for anything in between. A vector space that the
    manifest does not name (left by a kill between the store's commit and the manifest's)
    is invisible and dropped by the next write, so it does not count."""
    count, instructions = len(index), index.instructions
    named = {spec.space for spec in index.specs}
    if not named <= set(index.store.spaces()):
        return "BROKEN"
    whole = all(index.search(f"message number {i} about item {i % 3}", instructions[0], k=1)
                for i in range(16, 24))
    before = count == 24 and len(instructions) == 2 and whole
    after = {
        "add": count == 64,
        "delete": count == 8,
        "add_instruction": count == 24 and len(instructions) == 3,
        "remove_instruction": count == 24 and len(instructions) == 1,
    }[write] and whole
    state = "before" if before else "after" if after else "BROKEN"
    if state == "BROKEN":
        print(f"  broken: {count} documents, {len(instructions)} instructions, spaces {index.store.spaces()}")
    return state


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "kills"
    {"long-add": lambda: long_add(int(sys.argv[2]) if len(sys.argv) > 2 else 1200),
     "kills": lambda: kills(int(sys.argv[2]) if len(sys.argv) > 2 else 20,
                            *[tuple(arg.split(",")) for arg in sys.argv[3:5]])}[mode]()
