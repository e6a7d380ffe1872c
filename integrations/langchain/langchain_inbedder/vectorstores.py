"""``InBedderVectorStore``: a LangChain ``VectorStore`` over an ``InstructionIndex``.

Documents are stored once and embedded under several instructions (questions about
them); every search names the instruction it ranks by, or uses the store's default.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from inbedder_retrieval import FilterError, InstructionIndex
from inbedder_retrieval.index import MANIFEST
from inbedder_retrieval.validation import check_sequence
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore, VectorStoreRetriever
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from pydantic import model_validator

from .embeddings import InBedderEmbeddings

Instructions = Sequence[str] | Mapping[str, str | None]

#: Stored documents whose pairwise similarities calibrate the relevance scores.
CALIBRATION_DOCUMENTS = 256


def _as_mapping(instructions: Instructions | None, embedding: InBedderEmbeddings) -> dict[str, str | None]:
    """Instructions as {instruction: query instruction or None}, in order."""
    if instructions is None:
        return {embedding.embed_instruction: embedding.query_instruction}
    if isinstance(instructions, str):
        raise TypeError("instructions must be a list of questions (or a mapping to query instructions), not a str")
    if isinstance(instructions, Mapping):
        mapping = dict(instructions)
    else:
        mapping = dict.fromkeys(instructions)
    if not mapping:
        raise ValueError("instructions is empty: give at least one question to embed the documents under")
    return mapping


def _document(hit: Any) -> Document:
    """A stored document or search hit as a LangChain ``Document``."""
    return Document(id=hit.id, page_content=hit.text, metadata=dict(hit.metadata))


def _check_filter(filter: object) -> Mapping[str, Any] | None:
    if filter is None or isinstance(filter, Mapping):
        return filter
    if callable(filter):
        raise FilterError(
            "InBedderVectorStore filters are dicts such as {'product': 'headphones'} or "
            "{'year': {'$gte': 2020}}; a Python callable cannot be pushed down to the index"
        )
    return filter  # e.g. a native qdrant_client Filter; the backend decides


class InBedderRetriever(VectorStoreRetriever):
    """A retriever over an ``InBedderVectorStore`` with its own instruction and ``k``.

    ``InBedderRetriever(vectorstore=store, instruction="How does the customer feel?", k=3)``
    is ``store.as_retriever(search_kwargs={"instruction": ..., "k": 3})``; ``invoke(query,
    k=1, instruction=...)`` overrides them per call. ``filter`` takes the store's metadata
    filters.
    """

    k: int | None = None
    instruction: str | None = None
    filter: Mapping[str, Any] | None = None

    @model_validator(mode="after")
    def _into_search_kwargs(self) -> InBedderRetriever:
        given = {"k": self.k, "instruction": self.instruction, "filter": self.filter}
        self.search_kwargs = {**self.search_kwargs, **{key: value for key, value in given.items() if value is not None}}
        return self


class InBedderVectorStore(VectorStore):
    """Instruction-aware vector store: FAISS (default) or Qdrant behind an
    ``inbedder_retrieval.InstructionIndex``.

    Example:
        .. code-block:: python

            from langchain_inbedder import InBedderEmbeddings, InBedderVectorStore

            store = InBedderVectorStore.from_texts(
                texts,
                InBedderEmbeddings(),
                instructions=["Which product is discussed?", "How does the customer feel?"],
            )
            store.similarity_search("furious", k=3, instruction="How does the customer feel?")
            retriever = store.as_retriever(search_kwargs={"instruction": "Which product is discussed?"})

    Args:
        embedding: the ``InBedderEmbeddings`` whose model embeds documents and queries.
        path: folder of the index; an existing index there is opened (it must have been
            built with the same model), otherwise one is created. ``None`` uses a temporary
            folder that is removed on ``close()``.
        instructions: the questions to embed documents under, as a list, or a mapping from
            each to the question asked about queries (``None``: the same). The first one is
            the default for searches. Default: for a new index the embedding's
            ``embed_instruction``; an existing index is used with its own instructions
            (its first is the default) and opening it never writes: instructions named
            here that it lacks are added, which embeds the stored corpus under them.
        backend: "faiss" or "qdrant".
        store_options: backend options (FAISS ``factory``/``metric``; Qdrant ``url``,
            ``api_key``, ``collection``, ``location``).
        index: an open ``InstructionIndex`` to wrap instead of ``path`` (its model must be
            the embedding's: ``InBedderEmbeddings.from_model(index.model)``).
    """

    def __init__(
        self,
        embedding: InBedderEmbeddings,
        *,
        path: str | Path | None = None,
        instructions: Instructions | None = None,
        backend: str = "faiss",
        store_options: Mapping[str, Any] | None = None,
        index: InstructionIndex | None = None,
    ) -> None:
        if not isinstance(embedding, InBedderEmbeddings):
            raise TypeError(
                "InBedderVectorStore embeds with an InBedder model: pass an InBedderEmbeddings, "
                f"got {type(embedding).__name__}"
            )
        self._embedding = embedding
        self._calibrations: dict[str, tuple[int, np.ndarray]] = {}
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if index is not None and path is not None:
            raise ValueError("give either path or index, not both")
        if path is None and index is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="inbedder-langchain-")
            path = self._tempdir.name
        if index is not None:
            self.index = index
        elif (Path(path) / MANIFEST).exists():
            self.index = InstructionIndex.open(path, embedding.client, store_options=store_options)
        else:
            self.index = InstructionIndex.create(path, embedding.client, backend=backend, store_options=store_options)
            instructions = _as_mapping(instructions, embedding)
        self.default_instruction: str | None = None
        """The instruction searches use when they name none."""
        if instructions is None:  # an existing index: its own instructions, nothing written
            self.default_instruction = next(iter(self.index.instructions), None)
            return
        wanted = _as_mapping(instructions, embedding)
        for instruction, query_instruction in wanted.items():
            if instruction not in self.index.instructions:
                self.add_instruction(instruction, query_instruction)
        self.default_instruction = next(iter(wanted))

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def instructions(self) -> list[str]:
        """The questions the documents are embedded under."""
        return self.index.instructions

    def close(self) -> None:
        """Close the index (and remove its temporary folder, if it has one)."""
        self.index.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()

    def __enter__(self) -> InBedderVectorStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- FAISS-style persistence --------------------------------------------------------
    def save_local(self, folder_path: str | Path) -> None:
        """Write a copy of the index to ``folder_path`` (JSON, SQLite and the vector
        store's own files, no pickle); ``load_local`` opens it. A store opened with
        ``path=`` already persists every write there: saving to that folder only
        checkpoints. The Qdrant backend with a server keeps its vectors on the server, so
        only the FAISS and local Qdrant stores can be copied."""
        target, source = Path(folder_path), Path(self.index.path)
        if target.resolve() == source.resolve():
            self.index.save()
            return
        if "url" in self.index.info().get("store_options", {}):
            raise ValueError("this store's vectors live on a Qdrant server: reopen it with path= (the manifest) "
                             "instead of copying it")
        if (target / MANIFEST).exists():
            raise FileExistsError(f"{target} already holds an index; choose an empty folder")
        self.index.save()
        with self.index._writing():  # noqa: SLF001 (no writer may change the files while they are copied)
            shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.lock"))

    @classmethod
    def load_local(cls, folder_path: str | Path, embeddings: InBedderEmbeddings, *,
                   allow_dangerous_deserialization: bool = False, **kwargs: Any) -> InBedderVectorStore:
        """Open an index saved by ``save_local`` (the same as
        ``InBedderVectorStore(embeddings, path=folder_path)``). Nothing is unpickled, so
        ``allow_dangerous_deserialization`` is accepted for FAISS code and not needed."""
        if not (Path(folder_path) / MANIFEST).exists():
            raise FileNotFoundError(f"{folder_path} holds no index ({MANIFEST} is missing)")
        return cls(embeddings, path=folder_path, **kwargs)

    # -- writes -------------------------------------------------------------------------
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Add or replace texts (an existing id is overwritten), embedded under every
        instruction of the store in one transaction. Returns their ids."""
        texts = check_sequence(texts, "texts")
        given = [] if ids is None else check_sequence(ids, "ids")
        ids = [doc_id or str(uuid.uuid4()) for doc_id in (given or [None] * len(texts))]
        return self.index.add(texts, ids, metadatas, batch_size=self._embedding.batch_size,
                              show_progress_bar=self._embedding.show_progress)

    def add_instruction(self, instruction: str, query_instruction: str | None = None) -> None:
        """Embed every stored document under one more question (it becomes the default
        for searches if the store had none)."""
        self.index.add_instruction(instruction, query_instruction, batch_size=self._embedding.batch_size,
                                   show_progress_bar=self._embedding.show_progress)
        if self.default_instruction is None:
            self.default_instruction = instruction

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id (missing ids are ignored); ``ids=None`` deletes every
        document, as LangChain's contract says (the instructions stay). Returns True."""
        if ids is None:
            ids = [doc.id for batch in self.index.store.iter_documents() for doc in batch]
        if ids:
            self.index.delete(ids)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Stored documents by id, in the given order; missing ids are left out."""
        return [_document(doc) for doc in self.index.get(ids) if doc is not None]

    # -- search -------------------------------------------------------------------------
    def _instruction(self, instruction: str | None) -> str:
        if instruction is not None:
            return instruction
        if self.default_instruction is None:
            raise ValueError("this index has no instruction yet: add one with store.add_instruction(question)")
        return self.default_instruction

    def similarity_search_with_score(
        self,
        query: str,
        k: int = 4,
        filter: Mapping[str, Any] | None = None,
        instruction: str | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """Documents whose answer to ``instruction`` is closest to the query's, with
        cosine similarity (higher is closer). ``filter`` matches metadata:
        ``{"field": value}``, ``$eq $ne $gt $gte $lt $lte $in $nin $and $or``."""
        hits = self.index.search(query, self._instruction(instruction), k, _check_filter(filter))
        return [(_document(hit), hit.score) for hit in hits]

    def similarity_search(
        self,
        query: str,
        k: int = 4,
        filter: Mapping[str, Any] | None = None,
        instruction: str | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """The ``k`` documents closest to ``query`` under ``instruction``."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, instruction)]

    def similarity_search_by_vector_with_score(
        self,
        embedding: list[float],
        k: int = 4,
        filter: Mapping[str, Any] | None = None,
        instruction: str | None = None,
    ) -> list[tuple[Document, float]]:
        """Search ``instruction``'s vectors with a ready query vector."""
        hits = self.index.search_by_vector(np.asarray(embedding, dtype="float32"), self._instruction(instruction), k,
                                           _check_filter(filter))
        return [(_document(hit), hit.score) for hit in hits]

    def similarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: Mapping[str, Any] | None = None,
        instruction: str | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """The ``k`` documents closest to a query vector under ``instruction``."""
        return [doc for doc, _ in self.similarity_search_by_vector_with_score(embedding, k, filter, instruction)]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        instruction: str | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Relevant and diverse documents under ``instruction`` (maximal marginal relevance)."""
        instruction = self._instruction(instruction)
        return self._mmr(self.index.encode_query(query, instruction), k, fetch_k, lambda_mult, filter, instruction)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        instruction: str | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Maximal marginal relevance from a ready query vector."""
        return self._mmr(np.asarray(embedding, dtype="float32"), k, fetch_k, lambda_mult, filter,
                         self._instruction(instruction))

    def _mmr(self, vector: np.ndarray, k: int, fetch_k: int, lambda_mult: float, filter: Mapping[str, Any] | None,
             instruction: str) -> list[Document]:
        candidates = self.index.search_by_vector(vector, instruction, max(k, fetch_k), _check_filter(filter))
        if not candidates:
            return []
        stored = self.index.get_vectors([hit.id for hit in candidates], instruction)
        candidates = [hit for hit in candidates if hit.id in stored]
        chosen = maximal_marginal_relevance(
            vector, [stored[hit.id] for hit in candidates], lambda_mult=lambda_mult, k=k
        )
        return [_document(candidates[i]) for i in chosen]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Without an instruction's calibration: cosine similarity in [-1, 1] mapped to
        [0, 1] (the relevance scores themselves are calibrated per instruction, below)."""
        if self.index.metric == "l2":
            return lambda score: self._euclidean_relevance_score_fn(-score)
        return lambda score: (score + 1.0) / 2.0

    def _calibration(self, instruction: str) -> np.ndarray | None:
        """Sorted cosine similarities of every pair among the first
        ``CALIBRATION_DOCUMENTS`` stored documents under ``instruction`` (recomputed when
        the number of documents changes); ``None`` below two documents."""
        count = len(self.index)
        cached = self._calibrations.get(instruction)
        if cached is not None and cached[0] == count:
            return cached[1]
        documents = itertools.islice(itertools.chain.from_iterable(self.index.store.iter_documents()),
                                     CALIBRATION_DOCUMENTS)
        vectors = list(self.index.get_vectors([doc.id for doc in documents], instruction).values())
        reference = None
        if len(vectors) >= 2:
            unit = np.stack(vectors)
            unit = unit / np.linalg.norm(unit, axis=1, keepdims=True).clip(min=1e-12)
            reference = np.sort((unit @ unit.T)[np.triu_indices(len(unit), 1)])
        self._calibrations[instruction] = (count, reference)
        return reference

    def _similarity_search_with_relevance_scores(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """Relevance in [0, 1] calibrated on the index: the share of stored document pairs
        (under the same instruction) that are less similar to each other than the hit is
        to the query. A ``score_threshold`` of 0.9 keeps hits closer to the query than
        90% of document pairs are to each other. Below two documents, and for the l2
        metric, the plain mapping of ``_select_relevance_score_fn``."""
        instruction = self._instruction(kwargs.pop("instruction", None))
        hits = self.similarity_search_with_score(query, k, instruction=instruction, **kwargs)
        reference = None if self.index.metric == "l2" else self._calibration(instruction)
        if reference is None:
            plain = self._select_relevance_score_fn()
            return [(doc, plain(score)) for doc, score in hits]
        return [(doc, float(np.searchsorted(reference, score, side="right") / len(reference))) for doc, score in hits]

    async def _asimilarity_search_with_relevance_scores(self, query: str, k: int = 4,
                                                        **kwargs: Any) -> list[tuple[Document, float]]:
        return await run_in_executor(None, self._similarity_search_with_relevance_scores, query, k, **kwargs)

    def as_retriever(self, **kwargs: Any) -> InBedderRetriever:
        """An ``InBedderRetriever``: ``search_kwargs`` (or ``k=``, ``instruction=``,
        ``filter=``) as for ``similarity_search``; ``search_type`` "similarity", "mmr" or
        "similarity_score_threshold"."""
        tags = kwargs.pop("tags", None) or [*self._get_retriever_tags()]
        return InBedderRetriever(vectorstore=self, tags=tags, **kwargs)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        instructions: Instructions | None = None,
        backend: str = "faiss",
        path: str | Path | None = None,
        store_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> InBedderVectorStore:
        """Build a store from texts, embedded under each of ``instructions``."""
        store = cls(embedding, path=path, instructions=instructions, backend=backend, store_options=store_options)
        store.add_texts(texts, metadatas, ids=ids)
        return store
