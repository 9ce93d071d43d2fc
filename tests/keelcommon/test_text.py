"""keelcommon.text: the normalisation and MinHash that mining and data preparation share.

The signatures are pinned to the ones the two former copies (flywheel/text.py and training/data/dedup.py
at 4b4a4c0, identical) computed for these texts, so moving them changed no dedup or mining decision.
"""

from __future__ import annotations

import hashlib

import pytest

from keelcommon.text import minhash, normalise

# text -> (normalised, sha256 prefix of the 128-permutation signature from the former copies)
PINNED = {
    "Hello   World\n": ("hello world", "f3a910eee9bbe3b7"),
    "  TiDB 如何 部署？\t": ("tidb 如何 部署？", "9bd6afa8b6a6b9f4"),
    "How do I back up a TiDB cluster with BR?": (
        "how do i back up a tidb cluster with br?",
        "c1529345ca62a112",
    ),
    "abc": ("abc", "adece96b0c12a042"),
    "": ("", "ea5aa2983a7747ad"),
}


@pytest.mark.parametrize("text", list(PINNED))
def test_normalise_and_minhash_match_the_former_copies(text):
    normalised, signature = PINNED[text]
    assert normalise(text) == normalised
    assert hashlib.sha256(minhash(text).hashvalues.tobytes()).hexdigest()[:16] == signature


def test_whitespace_and_case_do_not_change_the_signature():
    a, b = minhash("How do I back up\n a TiDB cluster?"), minhash("how do i  BACK up a tidb cluster?")
    assert a.jaccard(b) == 1.0
    assert minhash("如何备份 TiDB 集群").jaccard(minhash("如何恢复 TiDB 集群")) < 1.0


def test_flywheel_and_training_use_this_one_implementation():
    import flywheel.mining
    import training.data.dedup

    assert flywheel.mining.minhash is training.data.dedup.minhash is minhash
    assert flywheel.mining.normalise is training.data.dedup.normalise is normalise
