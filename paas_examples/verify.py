"""Reading ``paas demo``'s proofs back and checking them, task by task.

Every task is judged by its record: COMPLETED tasks have their proof read back
and verified, PERMANENT_FAILURE ones are lost, and unfinished ones are lost (the
batch timed out) or left (a signal stopped the service). While the service runs,
proofs are read back with ``handle.wait``; after a signal has shut it down, the
records come from tasks.db, opened read-only, and the proofs from the run's proof
stores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from paas import (
    InternalError,
    ServiceHandle,
    SQLiteTaskStore,
    TaskRecord,
    TaskStatus,
)
from paas_examples import report
from paas_examples.plan import Plan, Submitted

LOST = "lost"  # ended without a proof, or did not end within --timeout-s
LEFT = "left"  # unfinished when a signal stopped the service; still in tasks.db
BAD_PROOF = "bad proof"

# Only tasks that have ended are read back, so this bounds a wait that returns at
# once; it is there so that a bug in paas shows up as an error, not a hang.
_READ_BACK_TIMEOUT_S = 30.0

ReadProof = Callable[[Submitted], bytes | None]


@dataclass(frozen=True)
class Problem:
    """Why a task does not count: ``lost``, ``left`` or ``bad proof``."""

    kind: str
    detail: str


def read_back(handle: ServiceHandle) -> ReadProof:
    """Proofs from the running service."""
    return lambda task: handle.wait(task.task_id, timeout_s=_READ_BACK_TIMEOUT_S)


def from_run_dir(plan: Plan) -> ReadProof:
    """Proofs from the run's proof stores, for after the service has stopped."""
    return lambda task: plan.proof_stores[task.lane.program_key].get(task.task_id)


def stored_records(run_dir: Path, batch: Sequence[Submitted]) -> dict[str, TaskRecord]:
    """The batch's records from tasks.db, read after the service has stopped."""
    store = SQLiteTaskStore(run_dir / "tasks.db", read_only=True)
    try:
        return {task.task_id: store.get(task.task_id) for task in batch}
    finally:
        store.close()


def verify_all(
    batch: Sequence[Submitted],
    records: dict[str, TaskRecord],
    read_proof: ReadProof,
    unfinished: Problem,
) -> dict[str, Problem]:
    """Every task that did not end with a verified proof, and why.

    ``unfinished`` is what a task that had not ended counts as; its detail says
    when, after the task's status.
    """
    problems: dict[str, Problem] = {}
    with report.progress() as progress:
        bar = progress.add_task("verify", total=len(batch))
        for task in batch:
            problem = _judge(task, records[task.task_id], read_proof, unfinished)
            if problem is not None:
                problems[task.task_id] = problem
            progress.advance(bar)
    return problems


def _judge(
    task: Submitted, record: TaskRecord, read_proof: ReadProof, unfinished: Problem
) -> Problem | None:
    if record.status is TaskStatus.COMPLETED:
        return _check_proof(task, read_proof)
    if record.status is TaskStatus.PERMANENT_FAILURE:
        return Problem(
            LOST,
            f"failed after {record.attempts} attempt(s): "
            f"{record.last_error_type}: {record.last_error_message}",
        )
    return Problem(unfinished.kind, f"still {record.status} {unfinished.detail}")


def _check_proof(task: Submitted, read_proof: ReadProof) -> Problem | None:
    try:
        proof = read_proof(task)
    except InternalError as exc:  # handle.wait: COMPLETED, yet no proof stored
        return Problem(BAD_PROOF, str(exc))
    if proof is None:
        return Problem(BAD_PROOF, "COMPLETED, yet the proof store has no proof")
    if not task.lane.verify(task.program, proof):
        return Problem(BAD_PROOF, f"the {len(proof)}-byte proof does not verify")
    return None
