"""Request bodies of the HTTP API (unknown fields are refused, so a misspelt
``instruction`` is an error rather than a silently used default)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddingRequest(_Strict):
    """OpenAI's embeddings request plus ``instruction``."""

    input: str | list[str] = Field(description="a text or a list of texts (token arrays are not supported)")
    model: str | None = Field(None, description="a served model (GET /v1/models); default: the server's model")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description="must equal the model's dimension if given")
    user: str | None = None
    instruction: str | None = Field(None, description="the question asked about every text; "
                                                      "default: the server's --instruction")


class AnswerRequest(_Strict):
    input: str | list[str]
    instruction: str | None = None
    model: str | None = None
    max_new_tokens: int | None = Field(None, ge=1, le=256)


class SearchRequest(_Strict):
    query: str = Field(min_length=1)
    instruction: str
    k: int = Field(10, ge=1)
    filter: dict[str, Any] | None = Field(None, description='the library\'s filter dialect, e.g. {"mood": "angry"} '
                                                            'or {"stars": {"$gte": 4}}')


class DocumentIn(_Strict):
    id: str | None = Field(None, min_length=1)
    text: str
    metadata: dict[str, Any] | None = None


class AddDocumentsRequest(_Strict):
    documents: list[DocumentIn]
    instructions: list[str] = Field(default_factory=list, description="also add these instructions first")


class DeleteDocumentsRequest(_Strict):
    ids: list[str]


class AddInstructionRequest(_Strict):
    instruction: str
    query_instruction: str | None = None


class ClusterRequest(_Strict):
    instruction: str
    k: int | None = Field(None, ge=2, le=20, description="clusters; default: chosen by silhouette")
    sample: int = Field(100, ge=3, le=1000, description="documents clustered (the first ones stored)")
