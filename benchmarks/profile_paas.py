"""Profile the paas host process on the dispatch workload, one profile per thread.

    python -m benchmarks.profile_paas [--tasks N] [--top N]

cProfile only sees the thread that enabled it, and the host's time is spread
over three kinds of thread: the caller (submit and wait), the input fetchers and
the supervisor loop. So every thread started while profiling gets a profiler of
its own, and the report groups them by thread name. Wall-clock waits (a lock,
``poll``) show up as time too; read them as where a thread sat, not as CPU.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import threading
import time
from collections.abc import Callable, Sequence

from benchmarks import _contenders as c
from benchmarks import _tasks

_profiles: dict[str, list[cProfile.Profile]] = {}


def _profiled(
    run: Callable[[threading.Thread], None],
) -> Callable[[threading.Thread], None]:
    def wrapper(thread: threading.Thread) -> None:
        profile = cProfile.Profile()
        group = re.sub(r"[-_]?\d+$", "", thread.name.split("_")[0])
        _profiles.setdefault(group, []).append(profile)
        profile.enable()
        try:
            run(thread)
        finally:
            profile.disable()

    return wrapper


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_paas")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)

    # Patched before the service starts, so its threads run under a profiler.
    patched = _profiled(threading.Thread.run)
    threading.Thread.run = patched  # type: ignore[method-assign]
    caller = cProfile.Profile()
    with c.running(c.PAAS, 2, [_tasks.noop], warm_timeout_s=30.0) as runner:
        caller.enable()
        started_s = time.perf_counter()
        runner.run(_tasks.noop, range(args.tasks), 300.0)
        elapsed_s = time.perf_counter() - started_s
        caller.disable()
    _profiles["caller"] = [caller]

    print(f"{args.tasks / elapsed_s:,.0f} tasks/s under cProfile ({elapsed_s:.2f} s)")
    for group, profiles in _profiles.items():
        print(f"\n===== thread group {group!r} ({len(profiles)} threads)")
        print(_top(profiles, args.top))
    return 0


def _top(profiles: list[cProfile.Profile], count: int) -> str:
    text = io.StringIO()
    stats = pstats.Stats(*profiles, stream=text)  # type: ignore[arg-type]
    stats.strip_dirs().sort_stats("tottime").print_stats(count)
    lines = text.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "\n".join(lines[start:]).rstrip()


if __name__ == "__main__":
    raise SystemExit(main())
