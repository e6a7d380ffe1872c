"""A small client for a running ``inbedder serve`` (httpx; no model is loaded here)."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import numpy as np

from ..errors import InBedderError
from ..stores import Hit
from .main import API_KEY_ENV


class ServerError(InBedderError):
    """The server refused a request; the message is the server's, with its status."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message if status is None else f"server answered {status}: {message}")
        self.status = status


class InBedderClient:
    """``embed`` and ``search`` against a server at ``base_url`` (the key defaults to
    ``$INBEDDER_API_KEY``)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 120.0) -> None:
        api_key = api_key or os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def embed(self, texts: Sequence[str], instruction: str | None = None, model: str | None = None) -> np.ndarray:
        """Unit vectors of ``texts`` under ``instruction`` (the server's default if None)."""
        body: dict[str, Any] = {"input": list(texts), "encoding_format": "base64"}
        body.update({key: value for key, value in (("instruction", instruction), ("model", model)) if value})
        rows = self._post("/v1/embeddings", body)["data"]
        return np.stack([np.frombuffer(base64.b64decode(row["embedding"]), dtype="<f4") for row in rows])

    def search(self, index: str, query: str, instruction: str, k: int = 10,
               filter: Mapping[str, Any] | None = None) -> list[Hit]:
        """The server's ``InstructionIndex.search`` on its index ``index``."""
        body = {"query": query, "instruction": instruction, "k": k, "filter": filter}
        hits = self._post(f"/v1/indexes/{index}/search", body)["hits"]
        return [Hit(id=hit["id"], text=hit["text"], metadata=hit["metadata"], score=hit["score"]) for hit in hits]

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._http.post(path, json=body)
        except httpx.TransportError as error:
            raise ServerError(None, f"cannot reach the server at {self._http.base_url}: {error}") from None
        if response.status_code != 200:
            try:
                error = response.json()["error"]
                known = f" (known: {', '.join(error['known'])})" if error.get("known") else ""
                message = error["message"] + known
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            raise ServerError(response.status_code, message)
        return response.json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InBedderClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
