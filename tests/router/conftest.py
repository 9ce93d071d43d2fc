from __future__ import annotations

import pytest

from tests.rag.corpus import build_small_index


@pytest.fixture(scope="session")
def small_index(shared_data, tmp_path_factory):
    return build_small_index(shared_data, tmp_path_factory.mktemp("rag-corpus"))


@pytest.fixture
def corpus_copy(small_index, shared_data, tmp_path_factory, tmp_path):
    """(docs, index) copies this test may edit."""
    from tests.rag.corpus import copy_corpus

    return copy_corpus(shared_data, small_index[0].parent, tmp_path)
