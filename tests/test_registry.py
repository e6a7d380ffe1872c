import dataclasses

import pytest

from inbedder_retrieval import DEFAULT_MODEL, ModelDescription, list_models
from inbedder_retrieval.models import REGISTRY


def test_registry_holds_reference_checkpoints_and_default():
    names = [model.name for model in list_models()]
    assert names[0] == DEFAULT_MODEL
    for name in ("BrandonZYW/llama-2-7b-InBedder", "BrandonZYW/opt-1.3b-InBedder",
                 "BrandonZYW/opt-2.7b-InBedder", "BrandonZYW/roberta-large-InBedder"):
        assert name in names
    roberta = REGISTRY["BrandonZYW/roberta-large-InBedder"]
    assert (roberta.family, roberta.pooling, roberta.mask_length) == ("masked", "avg_gen", 3)
    assert REGISTRY["BrandonZYW/opt-1.3b-InBedder"].max_new_tokens == 20
    assert REGISTRY["BrandonZYW/llama-2-7b-InBedder"].template.template.startswith("### Input:\n{input}")


def test_descriptions_are_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        list_models()[0].pooling = "avg_gen"
    with pytest.raises(TypeError):
        REGISTRY["x"] = list_models()[0]
    with pytest.raises(ValueError, match="family"):
        ModelDescription(name="x", family="rnn", source="x", pooling="fst_gen", dim=1)
