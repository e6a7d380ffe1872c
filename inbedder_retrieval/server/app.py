"""The HTTP app: OpenAI-compatible embeddings, answers, index search and writes, health,
metrics and the explorer page. Every route is a thin layer over ``InBedder`` and
``InstructionIndex``; model work goes through the model's ``Batcher``, store work to a
thread, so the event loop never waits on either."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from ..errors import CorruptIndexError, IncompatibleIndexError, IndexLockedError, InBedderError, UnknownInstructionError
from ..stores import FilterError
from .batching import Batcher
from .config import ServerConfig
from .explore import cluster_sample
from .guard import Guard, error_body
from .schemas import (
    AddDocumentsRequest,
    AddInstructionRequest,
    AnswerRequest,
    ClusterRequest,
    DeleteDocumentsRequest,
    EmbeddingRequest,
    SearchRequest,
)
from .service import ServedIndex, Service

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


class ApiError(Exception):
    """An error answered as ``error_body`` with ``status``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.extra = status, message, kind, param, extra


#: library errors -> (status, type); looked up along the exception's MRO, most specific first
LIBRARY_ERRORS: dict[type[Exception], tuple[int, str]] = {
    UnknownInstructionError: (404, "not_found"),
    FilterError: (400, "invalid_filter"),
    IndexLockedError: (409, "index_locked"),
    IncompatibleIndexError: (409, "incompatible_index"),
    CorruptIndexError: (500, "corrupt_index"),
    InBedderError: (500, "server_error"),
    ValueError: (422, "invalid_request_error"),
    TypeError: (422, "invalid_request_error"),
}


def create_app(service: Service, config: ServerConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``service``; it closes the service when it shuts down."""
    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(title="inbedder", summary="Instruction-aware embeddings and search", lifespan=lifespan)
    app.add_middleware(Guard, api_key=config.api_key, max_body_bytes=config.max_body_bytes, metrics=service.metrics)
    if config.cors_origins:  # added last = outermost, so preflights are answered before the key check
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    _add_error_handlers(app)

    def batcher(model: str | None) -> Batcher:
        if model is None:
            return service.batchers[service.default_model]
        if model not in service.batchers:
            raise ApiError(404, f"unknown model {model!r}", "not_found", "model", known=list(service.batchers))
        return service.batchers[model]

    def served(name: str) -> ServedIndex:
        if name not in service.indexes:
            raise ApiError(404, f"unknown index {name!r}", "not_found", "name", known=list(service.indexes))
        return service.indexes[name]

    def instruction_of(index: ServedIndex, instruction: str) -> str:
        known = index.index.instructions
        if instruction not in known:
            raise ApiError(404, f"{instruction!r} is not an instruction of index {index.name!r}", "not_found",
                           "instruction", known=known)
        return instruction

    def texts_of(value: str | Sequence[str], param: str) -> list[str]:
        texts = [value] if isinstance(value, str) else list(value)
        if not texts:
            raise ApiError(422, f"{param} is empty: give at least one text", param=param)
        if len(texts) > config.max_texts:
            raise ApiError(413, f"{len(texts)} texts exceed the limit of {config.max_texts} per request "
                                "(max_texts_per_request)", "limit_exceeded", param,
                           limit="max_texts_per_request", value=config.max_texts)
        for position, text in enumerate(texts):
            if len(text) > config.max_chars:
                raise ApiError(413, f"{param}[{position}] has {len(text)} characters, over the limit of "
                                    f"{config.max_chars} (max_chars_per_text)", "limit_exceeded",
                               f"{param}[{position}]", limit="max_chars_per_text", value=config.max_chars)
        return texts

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, str]:
        """Liveness probe (needs no API key)."""
        return {"status": "ok"}

    @app.get("/metrics", tags=["service"])
    async def metrics() -> Response:
        """Prometheus text format: requests, latency, batch sizes, queue depth, texts embedded."""
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    @app.get("/v1/models", tags=["embeddings"])
    async def models() -> dict[str, Any]:
        """The served models (OpenAI's list shape, plus each model's dimension)."""
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "inbedder", "dim": b.model.dim}
                                           for name, b in service.batchers.items()]}

    @app.post("/v1/embeddings", tags=["embeddings"])
    async def embeddings(body: EmbeddingRequest) -> JSONResponse:
        """OpenAI's embeddings endpoint; ``instruction`` is the question asked about every text."""
        model = batcher(body.model)
        if body.dimensions is not None and body.dimensions != model.model.dim:
            raise ApiError(422, f"dimensions must be {model.model.dim} for {model.model.name!r} (no truncation)",
                           param="dimensions")
        texts = texts_of(body.input, "input")
        instruction = config.default_instruction if body.instruction is None else body.instruction
        result = await model.embed(texts, instruction)
        encode = _ENCODINGS[body.encoding_format]
        data = [{"object": "embedding", "index": row, "embedding": encode(vector)}
                for row, vector in enumerate(result.vectors)]
        return JSONResponse({"object": "list", "data": data, "model": model.model.name, "instruction": instruction,
                             "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens}})

    @app.post("/v1/answer", tags=["embeddings"])
    async def answer(body: AnswerRequest) -> dict[str, Any]:
        """The model's short answers to ``instruction`` about each text."""
        model = batcher(body.model)
        texts = texts_of(body.input, "input")
        instruction = config.default_instruction if body.instruction is None else body.instruction
        answers = await model.run(lambda: model.model.answer(texts, instruction, max_new_tokens=body.max_new_tokens))
        return {"object": "list", "model": model.model.name, "instruction": instruction, "answers": answers}

    @app.get("/v1/indexes", tags=["indexes"])
    async def list_indexes() -> dict[str, Any]:
        """The served indexes with their sizes and instructions."""
        return {"indexes": [await run_in_threadpool(_summary, index) for index in service.indexes.values()]}

    @app.get("/v1/indexes/{name}", tags=["indexes"])
    async def index_info(name: str) -> dict[str, Any]:
        """An index's manifest (model, metric, backend, instructions) and document count."""
        index = served(name)
        return {"name": name, **await run_in_threadpool(index.index.info)}

    @app.post("/v1/indexes/{name}/search", tags=["indexes"])
    async def search(name: str, body: SearchRequest) -> dict[str, Any]:
        """The ``k`` documents whose answer to ``instruction`` is closest to the query's."""
        index = served(name)
        instruction = instruction_of(index, body.instruction)
        if not body.query.strip():
            raise ApiError(422, "query is empty or blank", param="query")
        if body.k > config.max_k:
            raise ApiError(413, f"k = {body.k} exceeds the limit of {config.max_k} (max_k)", "limit_exceeded", "k",
                           limit="max_k", value=config.max_k)
        texts_of(body.query, "query")
        spec = next(spec for spec in index.index.specs if spec.instruction == instruction)
        query = (await index.batcher.embed([body.query], spec.query_instruction)).vectors[0]
        hits = await run_in_threadpool(index.index.search_by_vector, query, instruction, body.k, body.filter)
        return {"index": name, "instruction": instruction, "hits": [
            {"id": hit.id, "score": hit.score, "text": hit.text, "metadata": hit.metadata} for hit in hits]}

    @app.post("/v1/indexes/{name}/documents", tags=["indexes"])
    async def add_documents(name: str, body: AddDocumentsRequest) -> dict[str, Any]:
        """Add or replace documents (one transaction: all of them or none)."""
        index = served(name)
        texts = texts_of([doc.text for doc in body.documents], "documents")
        given = [doc.id for doc in body.documents]
        if any(doc_id is None for doc_id in given) and any(doc_id is not None for doc_id in given):
            raise ApiError(422, "give every document an id, or none (ids are then generated)", param="documents")
        ids = None if given[0] is None else given
        metadatas = [doc.metadata or {} for doc in body.documents]
        added = await index.batcher.run(lambda: index.index.add(texts, ids=ids, metadatas=metadatas,
                                                                instructions=body.instructions))
        return {"ids": added, "documents": await run_in_threadpool(len, index.index)}

    @app.delete("/v1/indexes/{name}/documents", tags=["indexes"])
    async def delete_documents(name: str, body: DeleteDocumentsRequest) -> dict[str, Any]:
        """Delete documents by id; ``deleted`` counts those that existed."""
        index = served(name)
        deleted = await run_in_threadpool(index.index.delete, body.ids)
        return {"deleted": deleted, "documents": await run_in_threadpool(len, index.index)}

    @app.post("/v1/indexes/{name}/instructions", tags=["indexes"], status_code=201)
    async def add_instruction(name: str, body: AddInstructionRequest) -> dict[str, Any]:
        """Add an instruction and embed the stored corpus under it."""
        index = served(name)
        await index.batcher.run(lambda: index.index.add_instruction(body.instruction, body.query_instruction))
        return await run_in_threadpool(_summary, index)

    @app.post("/v1/indexes/{name}/cluster", tags=["explorer"])
    async def cluster(name: str, body: ClusterRequest) -> dict[str, Any]:
        """Cluster a sample of the index under ``instruction``: explanations and 2-D points."""
        index = served(name)
        instruction = instruction_of(index, body.instruction)
        return await index.batcher.run(lambda: cluster_sample(index.index, instruction, k=body.k, sample=body.sample))

    @app.get("/", include_in_schema=False)
    async def explorer() -> FileResponse:
        return FileResponse(STATIC / "explorer.html", media_type="text/html")

    @app.get("/explorer.js", include_in_schema=False)
    async def explorer_js() -> FileResponse:
        return FileResponse(STATIC / "explorer.js", media_type="text/javascript")

    @app.get("/explorer.css", include_in_schema=False)
    async def explorer_css() -> FileResponse:
        return FileResponse(STATIC / "explorer.css", media_type="text/css")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    return app


def _summary(index: ServedIndex) -> dict[str, Any]:
    info = index.index.info()
    return {"name": index.name, "documents": info["documents"], "model": info["model"]["name"],
            "backend": info["backend"], "metric": info["metric"],
            "instructions": [{"instruction": s["instruction"], "query_instruction": s["query_instruction"]}
                             for s in info["instructions"]]}


def _floats(vector: np.ndarray) -> list[float]:
    return vector.tolist()


def _base64(vector: np.ndarray) -> str:
    """Little-endian float32 bytes, as OpenAI's ``encoding_format="base64"``."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


_ENCODINGS = {"float": _floats, "base64": _base64}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error_body(error.message, error.kind, error.param, **error.extra), error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        if any(problem.get("type") == "json_invalid" for problem in problems):
            return JSONResponse(error_body("the request body is not valid JSON", "invalid_json"), 400)
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "invalid request")
        details = [{"loc": list(p.get("loc", ())), "msg": p.get("msg"), "type": p.get("type")} for p in problems]
        return JSONResponse(error_body(message, "invalid_request_error", where or None, details=details), 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(error.detail), "not_found" if error.status_code == 404 else "http_error"),
                            error.status_code, headers=getattr(error, "headers", None))

    async def library_error(request: Request, error: Exception) -> JSONResponse:
        status, kind = next(LIBRARY_ERRORS[cls] for cls in type(error).__mro__ if cls in LIBRARY_ERRORS)
        if status >= 500:
            logger.error("%s %s failed: %s", request.method, request.url.path, error)
        return JSONResponse(error_body(str(error), kind), status)

    for error_class in LIBRARY_ERRORS:
        app.add_exception_handler(error_class, library_error)
