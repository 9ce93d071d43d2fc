"""Shared fixtures. Expensive things (the converted base model, engines) are built once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KEEL_SHARED_DATA", REPO.parent / "shared" / "data"))
TEST_CACHE = Path(os.environ.get("KEEL_TEST_CACHE", Path.home() / ".cache" / "keel-test"))
ARTIFACTS = Path(os.environ.get("KEEL_TEST_ARTIFACTS", REPO / "test-artifacts"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        from tests.prereq import missing

        missing(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    """The embedded SmolLM2 as an HF folder, converted once and cached across sessions."""
    from keel.checkpoints.basemodel import ensure_base

    return ensure_base(TEST_CACHE / "checkpoints", None)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def platform_server(base_model_dir, tmp_path_factory):
    """One real `keel up` (real vLLM engine) for the whole test session."""
    from tests.harness import PlatformProcess

    p = PlatformProcess(data_dir=tmp_path_factory.mktemp("keel-data"), model_dir=base_model_dir)
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="session")
def api_key(platform_server) -> str:
    return platform_server.create_key("tests")


@pytest.fixture(scope="session")
def openai_client(platform_server, api_key):
    import openai

    return openai.OpenAI(base_url=f"{platform_server.url}/v1", api_key=api_key, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def openai_factory():
    """An openai client for any PlatformProcess (creates a key on it)."""
    import openai

    def make(platform):
        key = platform.create_key("client")
        return openai.OpenAI(base_url=f"{platform.url}/v1", api_key=key, max_retries=0, timeout=120)

    return make


@pytest.fixture(scope="session")
def small_index(shared_data, tmp_path_factory):
    """A small real index (docs + Chroma + BM25) built once per session for every RAG and router test."""
    from tests.rag.corpus import build_small_index

    return build_small_index(shared_data, tmp_path_factory.mktemp("rag-corpus"))


@pytest.fixture
def corpus_copy(small_index, shared_data, tmp_path):
    """(docs, index) copies this test may edit."""
    from tests.rag.corpus import copy_corpus

    return copy_corpus(shared_data, small_index[0].parent, tmp_path)


@pytest.fixture(scope="session")
def two_replicas(base_model_dir, shared_data, tmp_path_factory):
    """A platform of its own with two managed replicas (1 GiB of KV cache each) and a one-document corpus:
    the metrics tests read it, then the rolling-swap tests swap it and end by kill -9 of the platform
    (one two-engine start instead of two: ~2 min of CI)."""
    from tests.harness import platform_running
    from tests.swap.settings import SWAP_SETTINGS

    root = tmp_path_factory.mktemp("replicas")
    doc = "sql-statements/sql-statement-show-engines.md"
    (root / "docs" / doc).parent.mkdir(parents=True)
    shutil.copy(shared_data / "domain" / "tidb-docs-zh" / "docs" / doc, root / "docs" / doc)
    settings = ["engine.replicas=2", "engine.kvcache_gib=1", f"rag.corpus_paths=[{root / 'docs'}]"]
    with platform_running(root, base_model_dir, [*SWAP_SETTINGS, *settings]) as p:
        yield p


# Hot-swap tests first: they start and stop engines of their own, and on a 2-core host they are most
# reliable before the session platform's engine exists (vLLM pins each CPU engine's worker to core 0).
# The two-replica platform's readers come next, the tests that swap and kill it last among them.
_FIRST = ("/tests/swap/test_hot_swap.py", "/tests/platform/test_metrics.py", "/tests/swap/test_replicas.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = str(item.path)
        return next((i for i, end in enumerate(_FIRST) if path.endswith(end)), len(_FIRST))

    items.sort(key=rank)


@pytest.fixture
def restore_umask():
    """Platform() sets the process umask to 077; give the rest of the test session its own back."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)
