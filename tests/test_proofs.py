from __future__ import annotations

from pathlib import Path

import pytest

import paas


@pytest.fixture(params=["memory", "file"])
def proof_store(request: pytest.FixtureRequest, tmp_path: Path) -> paas.ProofStore:
    if request.param == "memory":
        return paas.InMemoryProofStore()
    return paas.FileProofStore(tmp_path / "proofs")


def test_put_then_get(proof_store: paas.ProofStore) -> None:
    proof_store.put("abc", b"proof-bytes")
    assert proof_store.get("abc") == b"proof-bytes"
    assert proof_store.get("missing") is None


def test_put_replaces(proof_store: paas.ProofStore) -> None:
    proof_store.put("abc", b"one")
    proof_store.put("abc", b"two")
    assert proof_store.get("abc") == b"two"


def test_file_store_leaves_no_temp_files(tmp_path: Path) -> None:
    store = paas.FileProofStore(tmp_path)
    store.put("t1", b"x" * 1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1.proof"]


def test_file_store_refuses_path_like_ids(tmp_path: Path) -> None:
    store = paas.FileProofStore(tmp_path)
    with pytest.raises(ValueError, match="not safe as a file name"):
        store.put("../evil", b"x")
