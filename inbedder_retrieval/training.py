"""Fine-tune a causal or masked language model into an InBedder.

The recipe of the reference (``alpaca_train/``): supervised fine-tuning on (input,
instruction, short answer) records in the InBedder template, loss on the answer tokens
only. Causal models learn ``answer + EOS`` after the prompt; masked models get one mask
token per answer token and predict them (inference then uses a fixed number of masks).
What this teaches is the answer *format*: the first answer token becomes a content word,
so the state that predicts it carries the answer.

Beyond the reference (both off by default): *wording augmentation* (a record may carry
several wordings of its question in ``instructions``; each epoch asks it with one of them,
drawn from the seed, the epoch and the record's position alone, so a resumed run draws the
same) and an *in-batch contrastive term* on the pooled vector the InBedder embeds (the
state at the last prompt token of ``pool_layer``; masked models: the mean over the masks):
records with the same question type and the same answer are positives, InfoNCE with
several positives (SupCon), weighted by ``contrastive_weight``. With the term on, each
epoch's order puts records that share a key next to each other so batches hold positives.

Checkpoints (``output_dir/checkpoint-N``) hold the trainable weights (safetensors), the
optimizer and scheduler state (loaded back with ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain containers) and the progress; training resumes
from the newest one. The output folder loads with ``InBedder.from_pretrained(output_dir)``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .atomic import atomic_directory, atomic_write_bytes
from .embedder import InBedder
from .encoders import Backend
from .io import read_records
from .models import ModelDescription, known_description, save_settings
from .prompts import PromptTemplate

logger = logging.getLogger(__name__)

FIELDS = ("input", "instruction", "output")
IGNORE = -100
STATE_FILE = "trainer_state.json"


@dataclass(frozen=True)
class QARecord:
    """One training record: a text, a question about it, and its short answer.

    Optional: ``instructions``, wordings of the same question that wording augmentation
    samples from (one per epoch); ``qtype``, the question type (aspect) asked, which makes
    records with the same type and answer positives for the contrastive term (free-form
    records, ``qtype == ""``, use their instruction instead); ``group``, an answer family
    ("anger" for "furious" and "annoyed") that replaces the answer in that key, so records
    whose answers are near-synonyms are not pushed apart.
    """

    input: str
    instruction: str
    output: str
    instructions: tuple[str, ...] = ()
    qtype: str = ""
    group: str = ""

    @property
    def contrast_key(self) -> tuple[str, str]:
        """Records with equal keys are positives for the contrastive term."""
        return (self.qtype or self.instruction, self.group or self.output.strip().lower())


def _check_record(record: object, where: str) -> QARecord:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object with {', '.join(FIELDS)}")
    for name in FIELDS:
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
    wordings = record.get("instructions", [])
    if not isinstance(wordings, list) or not all(isinstance(w, str) and w.strip() for w in wordings):
        raise ValueError(f"{where}: field 'instructions' must be a list of non-empty strings, got {wordings!r}")
    optional = {name: record.get(name, "") for name in ("qtype", "group")}
    for name, value in optional.items():
        if not isinstance(value, str):
            raise ValueError(f"{where}: field {name!r} must be a string, got {value!r}")
    return QARecord(record["input"], record["instruction"], record["output"], tuple(wordings), **optional)


def load_records(source: str | Path) -> list[QARecord]:
    """Records from a JSONL file, a folder of JSONL files, or a ``datasets`` hub id (e.g.
    ``KomeijiForce/Inbedder-Pretrain-Data``) where the hub is reachable. Every record is
    checked; an error names the file and line (or the row)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise FileNotFoundError(f"{path} holds no .jsonl files")
        return [record for file in files for record in load_records(file)]
    if path.is_file():
        records = [_check_record(data, f"{path}:{number}") for number, data in read_records(path)]
        if not records:
            raise ValueError(f"{path} holds no records")
        return records
    if path.exists() or path.suffix in (".jsonl", ".json"):
        raise FileNotFoundError(f"No such training file: {path}")
    try:
        from datasets import load_dataset  # optional: only for hub data sets
    except ImportError as error:
        raise ImportError(
            f"{source!r} is not a file; loading it as a hub data set needs: pip install 'inbedder-retrieval[hub-data]'"
        ) from error

    rows = load_dataset(str(source), split="train")
    return [_check_record(dict(row), f"{source} row {index}") for index, row in enumerate(rows)]


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters; the defaults are the reference's (1 epoch, lr 2e-5, cosine,
    warmup 3%, effective batch 64)."""

    epochs: float = 1.0
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.03
    effective_batch_size: int = 64
    micro_batch_size: int = 8
    max_length: int = 512
    max_steps: int | None = None
    save_steps: int = 50
    log_steps: int = 10
    seed: int = 42
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    augment_wordings: bool = False
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.05
    pool_layer: int = -1
    template: PromptTemplate = field(default_factory=PromptTemplate)

    def __post_init__(self) -> None:
        if self.contrastive_weight < 0:
            raise ValueError(f"contrastive_weight must be >= 0, got {self.contrastive_weight}")
        if self.contrastive_temperature <= 0:
            raise ValueError(f"contrastive_temperature must be > 0, got {self.contrastive_temperature}")

    @property
    def accumulation(self) -> int:
        return max(1, self.effective_batch_size // self.micro_batch_size)


@dataclass
class TrainingResult:
    output_dir: Path
    steps: int
    losses: list[float]
    contrastive_losses: list[float] = field(default_factory=list)  # the unweighted term, if on


# -- examples ----------------------------------------------------------------------------
def _answer_ids(backend: Backend, prompt: str, output: str) -> list[int]:
    spaced = output if prompt[-1:].isspace() else " " + output
    return backend.tokenizer(spaced, add_special_tokens=False)["input_ids"]


def causal_example(backend: Backend, record: QARecord, max_length: int) -> tuple[list[int], list[int]]:
    """Prompt ids + answer ids + EOS; labels only on the answer (the prompt loses tokens
    from the left if too long)."""
    (prompt,) = backend.build_prompts([record.input], record.instruction)
    prompt_ids = backend.tokenizer(prompt, add_special_tokens=not backend.template.uses_chat)["input_ids"]
    answer = _answer_ids(backend, prompt, record.output) + [backend.tokenizer.eos_token_id]
    prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(answer) - max_length):]
    return prompt_ids + answer, [IGNORE] * len(prompt_ids) + answer


def masked_example(backend: Backend, record: QARecord, max_length: int) -> tuple[list[int], list[int]]:
    """One mask per answer token after the prompt; labels are the answer at the masks."""
    tokenizer = backend.tokenizer
    (prompt,) = Backend.build_prompts(backend, [record.input], record.instruction)  # without the masks
    answer = _answer_ids(backend, prompt, record.output)
    ids = tokenizer(prompt + tokenizer.mask_token * len(answer), truncation=True, max_length=max_length)["input_ids"]
    labels = [IGNORE] * len(ids)
    positions = [index for index, token in enumerate(ids) if token == tokenizer.mask_token_id]
    for position, token in zip(positions, answer):
        labels[position] = token
    return ids, labels


EXAMPLE_BUILDERS = {"causal": causal_example, "masked": masked_example}


def _collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, target) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(target)] = torch.tensor(target)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


# -- checkpoints --------------------------------------------------------------------------
def _checkpoints(output_dir: Path) -> list[Path]:
    found = [p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.detach().contiguous().cpu() for name, param in model.named_parameters() if param.requires_grad}


def _save_checkpoint(output_dir: Path, model, optimizer, scheduler, state: dict[str, Any]) -> None:
    target = output_dir / f"checkpoint-{state['step']}"
    if target.exists():
        return
    with atomic_directory(target) as staging:
        save_file(_trainable_state(model), str(staging / "trainable.safetensors"))
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng},
                   staging / "optimizer.pt")
        (staging / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    for old in _checkpoints(output_dir)[:-2]:  # keep the two newest
        shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(folder: Path, model, optimizer, scheduler) -> dict[str, Any]:
    weights = load_file(str(folder / "trainable.safetensors"))
    missing = set(_trainable_state(model)) - set(weights)
    if missing:
        raise ValueError(f"{folder} does not match this model/configuration (missing {sorted(missing)[:3]} ...)")
    model.load_state_dict(weights, strict=False)
    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"]["cpu"])  # dropout continues as if never interrupted
    if "cuda" in saved["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(saved["rng"]["cuda"])
    return json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))


# -- training -----------------------------------------------------------------------------
def epoch_order(keys: Sequence[Hashable], seed: int, epoch: int, paired: bool = False) -> list[int]:
    """The record order of one epoch: a seeded shuffle; ``paired`` then puts records with
    equal keys two by two next to each other, so that even-sized micro-batches hold
    positives for the contrastive term. Records without a partner go two by two as well,
    and all these twos are shuffled together: a run that stops mid-epoch sees every kind
    of record in its share (unpaired ones are not left for the end)."""
    order = list(range(len(keys)))
    rng = random.Random(seed + epoch)
    rng.shuffle(order)
    if not paired:
        return order
    groups: dict[Hashable, list[int]] = {}
    for index in order:
        groups.setdefault(keys[index], []).append(index)
    twos, singles = [], []
    for members in groups.values():
        twos += [members[i : i + 2] for i in range(0, len(members) - 1, 2)]
        singles += members[len(members) - len(members) % 2 :]
    twos += [singles[i : i + 2] for i in range(0, len(singles), 2)]
    rng.shuffle(twos)
    return [index for two in twos for index in two]


def _micro_batches(keys: Sequence[Hashable], size: int, seed: int, start: int, paired: bool) -> Iterator[tuple[int, list[int]]]:
    """Endless (epoch, micro-batch of record indices), a new order each epoch, from ``start``."""
    per_epoch = math.ceil(len(keys) / size)
    position, orders = start, {}
    while True:
        epoch, offset = divmod(position, per_epoch)
        if epoch not in orders:
            orders = {epoch: epoch_order(keys, seed, epoch, paired)}
        yield epoch, orders[epoch][offset * size : (offset + 1) * size]
        position += 1


def wording(record: QARecord, index: int, epoch: int, seed: int) -> str:
    """The wording record ``index`` is asked with in ``epoch`` under augmentation: one of
    its ``instructions`` (its own ``instruction`` if it has none), drawn from the seed, the
    epoch and the index only."""
    if not record.instructions:
        return record.instruction
    return random.Random(f"{seed}:{epoch}:{index}").choice(record.instructions)


# -- the contrastive term -------------------------------------------------------------------
def _causal_pooled(states: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The state at the last prompt token (it predicts the first answer token): fst_gen."""
    first_answer = (labels != IGNORE).int().argmax(dim=1)
    return states[torch.arange(len(states), device=states.device), first_answer - 1]


def _masked_pooled(states: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean of the states at the mask tokens: avg_gen."""
    weights = (labels != IGNORE).to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1)


POOLED = {"causal": _causal_pooled, "masked": _masked_pooled}


def contrastive_loss(vectors: torch.Tensor, keys: Sequence[Hashable], temperature: float) -> torch.Tensor:
    """InfoNCE with several positives (SupCon): for each vector with at least one other of
    the same key, minus the mean log-softmax (over all other vectors, cosine / temperature)
    of its positives; averaged over those anchors. Zero (with a graph) if there is none."""
    unit = torch.nn.functional.normalize(vectors.float(), dim=-1)
    similarity = unit @ unit.T / temperature
    eye = torch.eye(len(keys), dtype=torch.bool, device=vectors.device)
    same = torch.tensor([[a == b for b in keys] for a in keys], device=vectors.device) & ~eye
    anchors = same.any(dim=1)
    if not anchors.any():
        return similarity.sum() * 0.0
    log_prob = similarity.masked_fill(eye, float("-inf")).log_softmax(dim=1)
    per_anchor = -log_prob.masked_fill(~same, 0.0).sum(dim=1) / same.sum(dim=1).clamp(min=1)
    return per_anchor[anchors].mean()


def batch_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], keys: Sequence[Hashable], family: str,
               config: TrainingConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss of one micro-batch and its contrastive term (``None`` when the weight is 0:
    then the loss is exactly the reference's)."""
    if config.contrastive_weight == 0:
        return model(**batch).loss, None
    outputs = model(**batch, output_hidden_states=True)
    pooled = POOLED[family](outputs.hidden_states[config.pool_layer], batch["labels"])
    term = contrastive_loss(pooled, keys, config.contrastive_temperature)
    return outputs.loss + config.contrastive_weight * term, term


def _check_layer(model: torch.nn.Module, layer: int) -> None:
    count = getattr(model.config, "num_hidden_layers", None)
    if count is not None and not -(count + 1) <= layer <= count:
        raise ValueError(f"pool_layer {layer} is out of range: the model has {count} layers "
                         f"(hidden states {-(count + 1)} .. {count}, -1 = last)")


def _wrap_lora(model: torch.nn.Module, config: TrainingConfig, family: str) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM" if family == "causal" else None,
    )
    return get_peft_model(model, lora)


def lora_to_continue(base: str | Path) -> ModelDescription | None:
    """The description of ``base`` if it is a LoRA InBedder (a registry entry or a folder
    saved by ``train``), whose adapter a LoRA run then trains further; else None."""
    description = known_description(base)
    return description if description is not None and description.base_model is not None else None


def _adapter_to_continue(adapter: ModelDescription, config: TrainingConfig) -> str:
    """The folder of ``adapter``'s weights, once its rank is known to match ``config``."""
    from peft import PeftConfig

    from .weights import resolve_source

    path = resolve_source(adapter.source)
    saved = PeftConfig.from_pretrained(path)
    if (saved.r, saved.lora_alpha) != (config.lora_r, config.lora_alpha):
        raise ValueError(f"{adapter.name} is a LoRA adapter of rank {saved.r} (alpha {saved.lora_alpha}); continuing "
                         f"it needs lora_r={saved.r}, lora_alpha={saved.lora_alpha}, not {config.lora_r}, "
                         f"{config.lora_alpha}")
    return path


def train(
    base: str | Path,
    records: Sequence[QARecord],
    output_dir: str | Path,
    config: TrainingConfig | None = None,
    *,
    device: str | None = None,
    show_progress_bar: bool = True,
) -> TrainingResult:
    """Fine-tune ``base`` (registry name, hub id or folder) on ``records`` into
    ``output_dir``; resumes from the newest checkpoint there. Returns the losses.

    A LoRA run (``config.lora``) on a LoRA InBedder (e.g. the default) trains that adapter
    further, on the adapter's own base model, and saves an adapter of the same base and
    rank; other runs start from ``base``'s weights (an adapter merged in)."""
    config = config or TrainingConfig()
    if not records:
        raise ValueError("no training records")
    continued = lora_to_continue(base) if config.lora else None
    adapter_path = _adapter_to_continue(continued, config) if continued else None  # checked before the model loads
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    start = continued.base_model if continued else base
    inbedder = InBedder.from_pretrained(start, device=device, dtype="float32", template=config.template,
                                        max_length=config.max_length)
    backend, family = inbedder.backend, inbedder.description.family
    if family not in EXAMPLE_BUILDERS:
        raise ValueError(f"training supports causal and masked models, not {family}")
    build = EXAMPLE_BUILDERS[family]
    _check_layer(backend.model, config.pool_layer)

    def example(index: int, epoch: int) -> tuple[list[int], list[int]]:
        record = records[index]
        if config.augment_wordings:
            record = replace(record, instruction=wording(record, index, epoch, config.seed))
        return build(backend, record, config.max_length)

    keys = [record.contrast_key for record in records]
    model = backend.model
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path, is_trainable=True)
    elif config.lora:
        model = _wrap_lora(model, config, family)
    model.train()
    total = config.max_steps or math.ceil(len(records) * config.epochs / (config.micro_batch_size * config.accumulation))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    from transformers import get_cosine_schedule_with_warmup

    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * total), total)
    state: dict[str, Any] = {"step": 0, "position": 0, "losses": [], "contrastive": []}
    checkpoints = _checkpoints(output_dir)
    if checkpoints:
        state = {"contrastive": [], **_load_checkpoint(checkpoints[-1], model, optimizer, scheduler)}
        logger.warning("Resuming from %s (step %d of %d)", checkpoints[-1], state["step"], total)
    use_bf16 = backend.device.type == "cuda" and torch.cuda.is_bf16_supported()
    batches = _micro_batches(keys, config.micro_batch_size, config.seed, state["position"],
                             paired=config.contrastive_weight > 0)
    bar = tqdm(total=total, initial=state["step"], desc="Training", unit="step", disable=not show_progress_bar)
    while state["step"] < total:
        step_loss = step_term = 0.0
        for _ in range(config.accumulation):
            epoch, indices = next(batches)
            batch = _collate([example(i, epoch) for i in indices], backend.tokenizer.pad_token_id, backend.device)
            with torch.autocast(device_type=backend.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss, term = batch_loss(model, batch, [keys[i] for i in indices], family, config)
                loss = loss / config.accumulation
            loss.backward()
            step_loss += loss.item()
            step_term += 0.0 if term is None else term.item() / config.accumulation
            state["position"] += 1
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        state["losses"].append(step_loss)
        if config.contrastive_weight > 0:
            state["contrastive"].append(step_term)
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}")
        if state["step"] % config.log_steps == 0:
            logger.info("step %d/%d loss %.4f", state["step"], total, step_loss)
        if state["step"] % config.save_steps == 0 or state["step"] == total:
            _save_checkpoint(output_dir, model, optimizer, scheduler, state)
    bar.close()
    model.eval()
    _save_model(model, inbedder, start, config, output_dir, len(records),
                origin=f"continuing the adapter of {continued.name}, " if continued else "")
    return TrainingResult(output_dir, state["step"], state["losses"], state["contrastive"])


def _save_model(model, inbedder: InBedder, base: str | Path, config: TrainingConfig, output_dir: Path, count: int,
                origin: str = "") -> None:
    """Write the model (or adapter), tokenizer and InBedder settings into ``output_dir``."""
    model.save_pretrained(output_dir)
    inbedder.backend.tokenizer.save_pretrained(output_dir)
    source = inbedder.description
    description: ModelDescription = replace(
        source,
        name=str(output_dir),
        source=str(output_dir),
        pooling="avg_gen" if source.family == "masked" else "fst_gen",
        layer=config.pool_layer,
        template=config.template,
        max_new_tokens=8,
        base_model=str(base) if config.lora else None,
        description=f"fine-tuned from {base} on {count} records ({origin}{'LoRA' if config.lora else 'full'}"
                    + (f", contrastive weight {config.contrastive_weight} at layer {config.pool_layer}"
                       if config.contrastive_weight else "") + ")",
    )
    save_settings(description, output_dir)  # written last: its presence marks a finished model


def _short_answer(text: str, max_words: int) -> str:
    """The first line of a generated answer, at most ``max_words`` words, without
    boilerplate punctuation (self-distillation keeps answers terse)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    words = line.strip(" .!?,;:\"'").split()
    return " ".join(words[:max_words])


def distill(
    teacher: InBedder,
    texts: Sequence[str],
    instructions: Sequence[str],
    *,
    max_words: int = 3,
    batch_size: int = 16,
    show_progress_bar: bool = True,
) -> list[QARecord]:
    """Self-distillation: an instruction-tuned ``teacher`` answers each question about
    each text; the terse answers become training records for ``train``. Empty answers
    are dropped."""
    records = []
    for instruction in instructions:
        answers = teacher.answer(list(texts), instruction, batch_size=batch_size, show_progress_bar=show_progress_bar)
        for text, answer in zip(texts, answers):
            short = _short_answer(answer, max_words)
            if short:
                records.append(QARecord(text, instruction, short))
    return records


def record_json(record: QARecord) -> dict[str, Any]:
    """A record as a JSON object; the optional fields only when set."""
    data: dict[str, Any] = {"input": record.input, "instruction": record.instruction, "output": record.output}
    if record.instructions:
        data["instructions"] = list(record.instructions)
    if record.qtype:
        data["qtype"] = record.qtype
    if record.group:
        data["group"] = record.group
    return data


def write_records(records: Sequence[QARecord], path: str | Path) -> None:
    """Write records as JSONL (the format ``load_records`` reads), atomically, creating the
    folder if needed: a crash never leaves half a file."""
    lines = [json.dumps(record_json(r), ensure_ascii=False) for r in records]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, ("\n".join(lines) + "\n").encode("utf-8"))
