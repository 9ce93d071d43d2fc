from __future__ import annotations

import pytest
from keel.store.db import Database
from keel.store.keys import KeyError_, KeyStore, hash_key


def test_create_verify_revoke(tmp_path):
    db = Database(tmp_path / "k.duckdb")
    store = KeyStore(db)
    info, secret = store.create("alice")
    assert secret.startswith("sk-keel-")
    stored = db.fetchall("SELECT key_hash FROM api_keys")
    assert stored == [(hash_key(secret),)]  # only the hash is kept
    assert store.verify(secret).key_id == info.key_id
    assert store.verify(secret + "x") is None
    store.revoke("alice")
    assert store.verify(secret) is None
    with pytest.raises(KeyError_, match="already revoked"):
        store.revoke(info.key_id)
    with pytest.raises(KeyError_, match="no key"):
        store.revoke("bob")
    with pytest.raises(KeyError_, match="unknown role"):
        store.create("x", role="root")
