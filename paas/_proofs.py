"""Proof stores: where a finished proof is kept, keyed by task id.

A proof store is any object with ``put(task_id, proof)`` and
``get(task_id) -> bytes | None``. ``put`` is called on the supervisor thread
before a task becomes COMPLETED; if it raises, the attempt is a transient failure,
so a task is never reported done without its proof stored.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Protocol

_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


class ProofStore(Protocol):
    """Where finished proofs go, keyed by task id.

    ``put`` runs on the supervisor thread before the task becomes COMPLETED, so
    it should be quick; ``get`` returns None for a task with no stored proof.
    """

    def put(self, task_id: str, proof: bytes) -> None: ...

    def get(self, task_id: str) -> bytes | None: ...


def checksum(proof: bytes) -> str:
    """The hash recorded next to a stored proof."""
    return hashlib.sha256(proof).hexdigest()


class InMemoryProofStore:
    """Proofs in a dict; for tests and throwaway use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proofs: dict[str, bytes] = {}

    def put(self, task_id: str, proof: bytes) -> None:
        with self._lock:
            self._proofs[task_id] = proof

    def get(self, task_id: str) -> bytes | None:
        with self._lock:
            return self._proofs.get(task_id)


class FileProofStore:
    """One file per proof under ``directory``, written atomically.

    The proof goes to a temp file in the same directory, is fsynced, then renamed
    over the final name, so a reader sees either no proof or the whole proof.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, task_id: str) -> Path:
        if not _SAFE_ID.match(task_id):
            raise ValueError(f"task id {task_id!r} is not safe as a file name")
        return self.directory / f"{task_id}.proof"

    def put(self, task_id: str, proof: bytes) -> None:
        final = self.path_for(task_id)
        fd, tmp_name = tempfile.mkstemp(
            dir=self.directory, prefix=".tmp-", suffix=".proof"
        )
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(proof)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, final)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, task_id: str) -> bytes | None:
        try:
            return self.path_for(task_id).read_bytes()
        except FileNotFoundError:
            return None
