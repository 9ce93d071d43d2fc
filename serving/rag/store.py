"""The on-disk index: a persistent Chroma collection (dense vectors) and a chunk catalog (the truth).

    <index_dir>/catalog.json   every chunk that should be searchable, with its text and metadata;
                               replaced atomically, so BM25 covers a new corpus within seconds
    <index_dir>/chroma/        vectors for the chunks embedded so far (may lag the catalog)

Dense embedding is the slow part (docs/BENCHMARKS.md, "Embedding throughput"), so the catalog is written first and Chroma
catches up chunk batch by chunk batch: an interrupted run resumes where it stopped, and retrieval uses
whatever is embedded so far. Chroma is thread-safe, not process-safe: one process owns the folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from keelcommon.files import write_json_atomic
from serving.errors import ServingError
from serving.rag.chunking import Chunk
from serving.rag.config import RagConfig

CATALOG_VERSION = 1


class IndexStoreError(ServingError, RuntimeError):
    """The index folder cannot be used (corrupt, wrong model, locked); one line for the user."""


@dataclass
class Catalog:
    embedder: str
    files: dict[str, dict] = field(default_factory=dict)  # source → {"sha256", "relpath"}
    chunks: list[Chunk] = field(default_factory=list)
    chunking: str = ""  # chunking_fingerprint() the chunks were cut with ("": before it was recorded)

    def to_json(self) -> dict:
        return {
            "version": CATALOG_VERSION,
            "embedder": self.embedder,
            "chunking": self.chunking,
            "files": self.files,
            "chunks": [{"id": c.id, "text": c.text, **c.metadata()} for c in self.chunks],
        }

    @classmethod
    def from_json(cls, data: dict) -> Catalog:
        chunks = [Chunk.from_metadata(d["id"], d["text"], d) for d in data["chunks"]]
        return cls(
            embedder=data["embedder"],
            files=dict(data["files"]),
            chunks=chunks,
            chunking=str(data.get("chunking") or ""),
        )


def catalog_path(index_dir: Path) -> Path:
    return Path(index_dir) / "catalog.json"


def load_catalog(index_dir: Path) -> Catalog | None:
    path = catalog_path(index_dir)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != CATALOG_VERSION:
            raise ValueError(f"version {data.get('version')!r}")
        return Catalog.from_json(data)
    except (ValueError, KeyError, TypeError) as e:
        raise IndexStoreError(
            f"index catalog {path} is corrupt ({type(e).__name__}: {e}); rebuild with --rebuild"
        ) from e


def save_catalog(index_dir: Path, catalog: Catalog) -> None:
    """Write to a temporary file and rename over the old one: readers see the old or the new catalog."""
    write_json_atomic(catalog_path(index_dir), catalog.to_json(), indent=None)


def open_collection(
    index_dir: Path,
    name: str,
    embedder_spec: str,
    create: bool,
    ef_search: int | None = None,
    runtime: str = "auto",
    device: str = "cpu",
):
    """The Chroma collection, with Keel's embedding function attached. Any Chroma failure → IndexStoreError.

    `ef_search` (writers only, `create=True`): the HNSW search breadth, set on a new collection and
    updated on an existing one that differs."""
    import chromadb
    from chromadb.config import Settings

    from serving.rag.embedder import KeelEmbeddingFunction, load_embedder

    chroma_dir = Path(index_dir) / "chroma"
    if not create and not chroma_dir.exists():
        return None
    try:
        client = chromadb.PersistentClient(
            path=str(chroma_dir), settings=Settings(anonymized_telemetry=False)
        )
        ef = KeelEmbeddingFunction(embedder_spec, load_embedder(embedder_spec, runtime, device))
        if create:
            hnsw: dict = {"space": "cosine"} | ({"ef_search": ef_search} if ef_search else {})
            col = client.get_or_create_collection(name, embedding_function=ef, configuration={"hnsw": hnsw})
            if ef_search and (col.configuration.get("hnsw") or {}).get("ef_search") != ef_search:
                col.modify(configuration={"hnsw": {"ef_search": ef_search}})
        else:
            col = client.get_collection(name, embedding_function=ef)
        col.count()  # touch the segment files now, not in the middle of a request
        return col
    except Exception as e:  # chromadb raises many types (sqlite, rust bindings, value errors)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not create and "does not exist" in msg:
            return None
        raise IndexStoreError(f"Chroma index at {chroma_dir} cannot be opened: {msg}") from e


def open_index(index_dir: Path, config: RagConfig, create: bool):
    """`open_collection` as ``config`` names it (collection, embedder, runtime, device); a writer
    (``create=True``) also sets the HNSW search breadth."""
    return open_collection(
        index_dir,
        config.collection,
        config.embedder,
        create=create,
        ef_search=config.hnsw_ef_search if create else None,
        runtime=config.embed_runtime,
        device=config.embed_device,
    )
