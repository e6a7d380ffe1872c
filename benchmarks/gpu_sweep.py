"""Issue 16 on a lent GPU: several training runs side by side, then every model scored.

One GPU holds many small training runs at once (a 135M model is launch-bound, not
compute-bound), so a sweep is: build training data v2 (once per distinct ``data`` entry of
the plan's runs: ``{"list_options": 1}`` is ``--list-options 1``; a file already in the work
folder is used as it is), start every run of a plan as its own ``inbedder train`` process, then score each finished model, and the shipped default as the
reference, on the held-out and seen wordings of every fixture (``evaluation.unseen``) and on
the current fixtures (``inbedder eval``), in parallel processes. Adapters come back as
float16 (``tools/ship_adapter.py``) so they can be checked and shipped on a CPU machine.

    python benchmarks/gpu_sweep.py calibrate --base RANDOM_MODEL_DIR --work W
    python benchmarks/gpu_sweep.py sweep --plan benchmarks/gpu_sweep_plan.json --work W --out OUT \
        [--train-budget 270] [--calibration W/calibration.json]
    python benchmarks/gpu_sweep.py evaluate MODEL --json PATH [--device cuda]   # one model, any machine
    python benchmarks/gpu_sweep.py report RESULT.json ... > table.md

``calibrate`` times the plan's concurrency with a random-weight model of the same shape, so
``sweep`` can scale every run's epochs to fit ``--train-budget`` seconds (recorded in the
results: a scaled run says so).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS_PER_EPOCH_GUESS = 14_450  # inbedder train-data build (checked against the built file)
CURRENT_FIXTURES = ("two_aspects", "support_messages")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from inbedder_retrieval.cli import main; sys.exit(main())", *args]


def _rate(log: Path) -> float | None:
    """Seconds per optimizer step, from the last tqdm rate in a training log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    found = re.findall(r"([\d.]+)(s/step|step/s)", text)
    if not found:
        return None
    value, unit = found[-1]
    return float(value) if unit == "s/step" else 1.0 / float(value)


def _train_args(run: dict, data: Path, output: Path, epochs: float, device: str) -> list[str]:
    args = ["train", "--lora", "--data", str(data), "-o", str(output), "--device", device,
            "--epochs", str(epochs), "--save-steps", str(run.get("save_steps", 200))]
    for key, value in run["args"].items():
        flag = "--" + key.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def _wait(processes: dict[str, subprocess.Popen], deadline: float) -> dict[str, int | None]:
    """Wait for all; kill what is still running at ``deadline``. Returns exit codes (None = killed)."""
    codes: dict[str, int | None] = {}
    while len(codes) < len(processes):
        for name, process in processes.items():
            if name not in codes and process.poll() is not None:
                codes[name] = process.returncode
                print(f"[{time.strftime('%H:%M:%S')}] {name} exited {process.returncode}", flush=True)
        if time.time() > deadline:
            for name, process in processes.items():
                if name not in codes:
                    process.kill()
                    codes[name] = None
                    print(f"[{time.strftime('%H:%M:%S')}] {name} killed at the deadline", flush=True)
        time.sleep(2)
    return codes


def build_data(work: Path, options: dict | None = None) -> Path:
    """``inbedder train-data build`` with a run's ``data`` options ({"list_options": 1}), once per variant."""
    options = options or {}
    data = work / ("v2" + "".join(f"-{key}{value}" for key, value in sorted(options.items())) + ".jsonl")
    if not data.exists():
        flags = [item for key, value in sorted(options.items()) for item in ("--" + key.replace("_", "-"), str(value))]
        subprocess.run(_cli("train-data", "build", "-o", str(data), *flags), check=True, cwd=ROOT)
    return data


def calibrate(args: argparse.Namespace) -> None:
    """Seconds per step of the plan's runs started together (random weights, same shape)."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = build_data(work)
    plan = json.loads(Path(args.plan).read_text())
    processes = {}
    for run in plan["runs"]:
        name = run["name"]
        cmd = _cli(*_train_args(run, data, work / f"calib-{name}", 1.0, args.device),
                   "--base", args.base, "--max-steps", str(args.steps))
        processes[name] = _start(cmd, work / f"calib-{name}.log")
    start = time.time()
    codes = _wait(processes, start + args.timeout)
    rates = {name: _rate(work / f"calib-{name}.log") for name in processes}
    result = {"steps": args.steps, "seconds": time.time() - start, "codes": codes, "seconds_per_step": rates}
    (work / "calibration.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    for name, code in codes.items():
        if code != 0:
            print(f"--- {name} log tail ---\n" + (work / f"calib-{name}.log").read_text(errors="replace")[-3000:])


def random_model(args: argparse.Namespace) -> None:
    """A random-weight causal LM with the config and tokenizer in ``source`` (smaller if asked)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(args.source)
    for name, value in (("num_hidden_layers", args.layers), ("hidden_size", args.hidden),
                        ("intermediate_size", args.hidden and 2 * args.hidden)):
        if value:
            setattr(config, name, value)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(args.target)
    AutoTokenizer.from_pretrained(args.source).save_pretrained(args.target)


def _epoch_scale(plan: dict, calibration: Path | None, budget: float, records: int) -> float:
    if calibration is None or not calibration.exists():
        return 1.0
    rates = [r for r in json.loads(calibration.read_text())["seconds_per_step"].values() if r]
    if not rates:
        return 1.0
    slowest = max(rates)
    longest = max(run["epochs"] * records / run["args"].get("effective_batch_size", 16) for run in plan["runs"])
    return min(1.0, budget / (longest * slowest))


def sweep(args: argparse.Namespace) -> None:
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    plan = json.loads(Path(args.plan).read_text())
    datasets = {run["name"]: build_data(work, run.get("data")) for run in plan["runs"]}
    counts = {data: sum(1 for _ in data.open()) for data in set(datasets.values())}
    records = max(counts.values())
    scale = _epoch_scale(plan, Path(args.calibration) if args.calibration else None, args.train_budget, records)
    print(f"at most {records} records; epoch scale {scale:.3f}", flush=True)
    processes, meta = {}, {}
    for run in plan["runs"]:
        epochs = round(run["epochs"] * scale, 3)
        data = datasets[run["name"]]
        meta[run["name"]] = {"planned_epochs": run["epochs"], "epochs": epochs, "args": run["args"],
                             "data": run.get("data", {}), "records": counts[data]}
        cmd = _cli(*_train_args(run, data, work / run["name"], epochs, args.device), "--base", args.base,
                   *(["--max-steps", str(args.max_steps)] if args.max_steps else []))
        processes[run["name"]] = _start(cmd, work / f"train-{run['name']}.log")
    codes = _wait(processes, started + args.train_budget + 150)
    for name, code in codes.items():
        meta[name].update(code=code, seconds_per_step=_rate(work / f"train-{name}.log"),
                          log_tail=(work / f"train-{name}.log").read_text(errors="replace")[-600:])
    print(f"training done after {time.time() - started:.0f} s", flush=True)
    models = {"default": "smollm2-135m-inbedder"}
    models |= {name: str(work / name) for name, code in codes.items() if code == 0}
    evaluations = {name: _start([sys.executable, __file__, "evaluate", model, "--json", str(work / f"eval-{name}.json"),
                                 "--device", args.device, "--per-cell", str(args.eval_per_cell),
                                 *(["--wordings", str(args.eval_wordings)] if args.eval_wordings else [])],
                                work / f"eval-{name}.log")
                   for name, model in models.items()}
    _wait(evaluations, started + args.total_budget)
    results = {}
    for name in models:
        path = work / f"eval-{name}.json"
        results[name] = json.loads(path.read_text()) if path.exists() else {
            "error": (work / f"eval-{name}.log").read_text(errors="replace")[-1500:]}
        results[name]["training"] = meta.get(name)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(report_table(results), flush=True)
    for name, code in codes.items():
        if code == 0:
            ship(work / name, work / f"ship-{name}", out / f"{name}.tar")
    print(f"sweep done after {time.time() - started:.0f} s", flush=True)


def ship(trained: Path, shipped: Path, archive: Path) -> None:
    """The adapter as it would be shipped (float16 weights), in one tar file."""
    subprocess.run([sys.executable, str(ROOT / "tools" / "ship_adapter.py"), str(trained), str(shipped)], check=True)
    with tarfile.open(archive, "w") as tar:
        for file in sorted(shipped.iterdir()):
            tar.add(file, arcname=f"{trained.name}/{file.name}")


def evaluate(args: argparse.Namespace) -> None:
    """Unseen-wording summaries on every fixture and the current fixtures' scores, as JSON."""
    from dataclasses import asdict

    from inbedder_retrieval import InBedder
    from inbedder_retrieval.evaluation import FIXTURES
    from inbedder_retrieval.evaluation import evaluate as awareness
    from inbedder_retrieval.evaluation.baselines import inbedder as embed_with
    from inbedder_retrieval.evaluation.unseen import (balanced_subset, fixture_hm, load_wordings, score_wordings,
                                                      summarise)
    from inbedder_retrieval.samples import load_sample

    start = time.time()
    model = InBedder.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    result: dict = {"model": args.model, "device": args.device, "dtype": args.dtype, "current": {}}

    def write() -> None:  # after every step: a run stopped at its deadline keeps what it scored
        result["seconds"] = time.time() - start
        Path(args.json).write_text(json.dumps(result, indent=1))

    for fixture in CURRENT_FIXTURES:
        row = awareness("model", embed_with(model), fixture, load_sample(fixture), FIXTURES[fixture])
        result["current"][fixture] = {"triplets": row.triplets, "triplet_hm": row.triplet_hm,
                                      "v_measures": row.v_measures, "v_measure_hm": row.v_measure_hm}
        write()
    wordings, scores = load_wordings(), []
    for fixture in FIXTURES:
        aspects = [entry for entry in wordings.values() if entry.fixture == fixture]
        if not aspects:
            continue
        records = load_sample(fixture)
        if args.per_cell:
            records = balanced_subset(records, list(FIXTURES[fixture]), args.per_cell)
        scores += score_wordings(lambda texts, qs: model.encode_many(texts, qs, batch_size=args.batch_size),
                                 records, aspects, args.wordings)
        summaries = summarise(scores)
        result |= {"held_out_hm": fixture_hm(summaries, True), "seen_hm": fixture_hm(summaries, False),
                   "aspects": [asdict(summary) for summary in summaries],
                   "wordings": [asdict(score) for score in scores]}
        write()
    print(f"evaluated {args.model} in {result['seconds']:.0f} s")


def report_table(results: dict) -> str:
    """Held-out HM per fixture, the weakest held-out aspect, and the current fixtures' triplet HM."""
    scored = {name: r for name, r in results.items() if "held_out_hm" in r and len(r.get("current", {})) == 2}
    if not scored:
        return "no model was scored"
    fixtures = list(next(iter(scored.values()))["held_out_hm"])
    head = "| model | " + " | ".join(fixtures) + " | weakest aspect | " + " | ".join(
        f"current {f}" for f in CURRENT_FIXTURES) + " | seen HM mean |"
    lines = [head, "|---" * (len(fixtures) + 3 + len(CURRENT_FIXTURES)) + "|"]
    for name, r in scored.items():
        weakest = min(r["aspects"], key=lambda a: a["held_out_mean"])
        seen = sum(r["seen_hm"].values()) / len(r["seen_hm"])
        lines.append(f"| {name} | " + " | ".join(f"{r['held_out_hm'][f]:.3f}" for f in fixtures)
                     + f" | {weakest['fixture']}/{weakest['aspect']} {weakest['held_out_mean']:.3f} | "
                     + " | ".join(f"{r['current'][f]['triplet_hm']:.3f}" for f in CURRENT_FIXTURES)
                     + f" | {seen:.3f} |")
    for name, r in results.items():
        if "error" in r:
            lines.append(f"\n{name} failed:\n{r['error']}")
    return "\n".join(lines)


def report(args: argparse.Namespace) -> None:
    merged = {}
    for path in args.results:
        data = json.loads(Path(path).read_text())
        merged |= data if "held_out_hm" not in data else {Path(path).stem: data}
    print(report_table(merged))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    calib = commands.add_parser("calibrate")
    calib.add_argument("--base", required=True)
    calib.add_argument("--plan", default=str(ROOT / "benchmarks" / "gpu_sweep_plan.json"))
    calib.add_argument("--work", required=True)
    calib.add_argument("--steps", type=int, default=40)
    calib.add_argument("--timeout", type=float, default=150)
    calib.add_argument("--device", default="cuda")
    rand = commands.add_parser("random-model")
    rand.add_argument("source")
    rand.add_argument("target")
    rand.add_argument("--layers", type=int, default=None)
    rand.add_argument("--hidden", type=int, default=None)
    run = commands.add_parser("sweep")
    run.add_argument("--plan", default=str(ROOT / "benchmarks" / "gpu_sweep_plan.json"))
    run.add_argument("--work", required=True)
    run.add_argument("--out", required=True)
    run.add_argument("--train-budget", type=float, default=270)
    run.add_argument("--total-budget", type=float, default=560)
    run.add_argument("--calibration", default=None)
    run.add_argument("--device", default="cuda")
    run.add_argument("--base", default="smollm2-135m-instruct")
    run.add_argument("--max-steps", type=int, default=None, help="cap every run (for a dry run)")
    run.add_argument("--eval-per-cell", type=int, default=0, help="texts per label pair (0 = whole fixtures)")
    run.add_argument("--eval-wordings", type=int, default=None, help="first N held-out and seen wordings (dry runs)")
    one = commands.add_parser("evaluate")
    one.add_argument("model")
    one.add_argument("--json", required=True)
    one.add_argument("--device", default="cuda")
    one.add_argument("--dtype", default="float32")
    one.add_argument("--batch-size", type=int, default=64)
    one.add_argument("--per-cell", type=int, default=0, help="texts per label pair (0 = whole fixtures)")
    one.add_argument("--wordings", type=int, default=None, help="first N held-out and N seen wordings per aspect")
    rep = commands.add_parser("report")
    rep.add_argument("results", nargs="+")
    args = parser.parse_args()
    {"calibrate": calibrate, "random-model": random_model, "sweep": sweep, "evaluate": evaluate, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
