"""The ``paas`` command line: one subcommand per job.

    paas [--log-level LEVEL] COMMAND [options]

Each subcommand is two functions: ``_add_<name>`` declares its parser and points
``run`` at ``_run_<name>``, which imports what the job needs and runs it. Adding a
command means writing that pair and listing ``_add_<name>`` in ``_SUBCOMMANDS``.
Imports stay inside the ``_run_*`` functions so ``paas --help`` and every other
command load nothing they do not use: the demo pulls in rich and, through
``paas_examples``, a GPL-licensed prover that paas itself must never import.

The library keeps its loguru logger disabled; the CLI is the host, so it enables
it here with one stderr sink.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

    _Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_LEVEL = "WARNING"
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE from sysexits.h
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``paas`` command line; returns the process exit status."""
    parser = _build_parser()
    # `paas bench` hands its own flags on to the benchmark runner.
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.bench_args = rest
    _enable_logging(args.log_level)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        # The service's workers sit in their own process group, so Ctrl-C reached
        # only this process; leaving run() shut them down on the way out.
        print("Interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


# -- parser ---------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paas", description="Proof generation as a service."
    )
    _add_log_level(parser, default=DEFAULT_LOG_LEVEL)
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for add_subcommand in _SUBCOMMANDS:
        add_subcommand(subparsers)
    return parser


def _add_log_level(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default,
        metavar="LEVEL",
        help=f"log to stderr from this level up (default {DEFAULT_LOG_LEVEL}; "
        f"one of {', '.join(LOG_LEVELS)})",
    )


def _subcommand_parser(
    subparsers: _Subparsers, name: str, summary: str, description: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=summary, description=description
    )
    # SUPPRESS keeps `paas --log-level INFO demo` working: without it the
    # subcommand's default would overwrite the level given before the command.
    _add_log_level(parser, default=argparse.SUPPRESS)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


# -- paas demo ------------------------------------------------------------------

_DEMO_TASKS = 140
_DEMO_CHAOS_TASKS = 40


def _add_demo(subparsers: _Subparsers) -> None:
    parser = _subcommand_parser(
        subparsers,
        "demo",
        summary="prove a real batch on two backend pools and verify every proof",
        description=(
            "Prove a batch of VDF (chiavdf) and Groth16 (groth16py) programs, each "
            "on its own backend pool, read every proof back, verify it and print "
            "per-backend timings. Without groth16py, the VDF runs on two backends. "
            "Each run keeps its tasks (SQLite) and proofs (files) in a fresh run "
            "directory. The first Ctrl-C lets running proofs finish and leaves "
            "queued tasks queued, a second stops at once. With --chaos, workers "
            "are killed and frozen at random while the batch runs. Exits non-zero "
            "if any proof is missing or fails verification, or a chaos check fails."
        ),
    )
    _add_demo_batch_options(parser)
    _add_demo_chaos_options(parser)
    parser.set_defaults(run=_run_demo)


def _add_demo_batch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tasks",
        metavar="N",
        type=_positive_int,
        default=None,
        help=f"tasks per program (default {_DEMO_TASKS}, about a minute on 2 "
        f"cores; with --chaos {_DEMO_CHAOS_TASKS})",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=_positive_int,
        default=1,
        help="worker processes per backend pool (default %(default)s, so the two "
        "pools fill 2 cores)",
    )
    parser.add_argument(
        "--iterations",
        metavar="N",
        type=_positive_int,
        default=60_000,
        help="VDF iterations per task (default %(default)s; about 0.5-1 s per "
        "100000 on one core)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        default="./demo-state",
        help="each run creates its own run-<time>-<random> directory here, with "
        "its task database, proofs and Groth16 key (default %(default)s)",
    )
    parser.add_argument(
        "--seed",
        metavar="N",
        type=int,
        default=0,
        help="seed for the program inputs and the chaos schedule; the same seed "
        "proves the same batch (default %(default)s)",
    )
    parser.add_argument(
        "--timeout-s",
        metavar="SECONDS",
        type=_positive_float,
        default=900.0,
        help="give up on tasks not finished this many seconds after submission "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--drain-timeout-s",
        metavar="SECONDS",
        type=_positive_float,
        default=30.0,
        help="after the first Ctrl-C, give running proofs this long to finish "
        "(default %(default)s)",
    )


def _add_demo_chaos_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chaos",
        action="store_true",
        help="kill (SIGKILL) and freeze (SIGSTOP) random live workers while the "
        "batch runs, then check that no task was lost or completed twice and "
        "that no process or file descriptor was left behind",
    )
    parser.add_argument(
        "--chaos-rate",
        metavar="PER_S",
        type=_positive_float,
        default=1.0,
        help="chaos events per second, on average (default %(default)s)",
    )
    parser.add_argument(
        "--chaos-freeze-share",
        metavar="FRACTION",
        type=_fraction,
        default=1 / 3,
        help="share of chaos events that freeze rather than kill (default 1/3)",
    )
    parser.add_argument(
        "--chaos-events",
        metavar="N",
        type=_positive_int,
        default=None,
        help="stop injecting after N kills and freezes (default: until every task "
        "has ended)",
    )


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _run_demo(args: argparse.Namespace) -> int:
    try:
        from paas_examples import demo
    except ModuleNotFoundError as exc:
        if exc.name not in _DEMO_NEEDS:
            raise
        hint = _DEMO_NEEDS[exc.name]
        print(f"paas demo: cannot import {exc.name}; {hint}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.tasks is None:
        args.tasks = _DEMO_CHAOS_TASKS if args.chaos else _DEMO_TASKS
    return int(demo.main(args))


_DEMO_NEEDS = {
    "paas_examples": (
        "it ships beside paas in the source tree. If paas is installed in editable "
        "mode from a checkout older than paas_examples, reinstall it (pip install "
        "-e .) so the import finder learns about the new package."
    ),
    "rich": "install the demo extras: pip install 'paas[demo]'",
    "chiavdf": "install the demo extras: pip install 'paas[demo]'",
}


# -- paas status ------------------------------------------------------------------


def _add_status(subparsers: _Subparsers) -> None:
    parser = _subcommand_parser(
        subparsers,
        "status",
        summary="counts by status and backend, and the last failures, of a state dir",
        description=(
            "Read a service's state dir without writing to it (safe while the "
            "service runs) and print task counts per backend and status, then the "
            "most recent failures."
        ),
    )
    parser.add_argument(
        "--state-dir", metavar="DIR", required=True, help="the service's state_dir"
    )
    parser.set_defaults(run=_run_status)


def _run_status(args: argparse.Namespace) -> int:
    from paas._errors import StoreError
    from paas._status import render_status

    try:
        print(render_status(args.state_dir), flush=True)
    except StoreError as exc:
        print(f"paas status: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader (say `| head`) closed the pipe early: not an error here. Point
        # stdout at /dev/null so the interpreter's final flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


# -- paas bench -------------------------------------------------------------------


def _add_bench(subparsers: _Subparsers) -> None:
    parser = _subcommand_parser(
        subparsers,
        "bench",
        summary="compare paas with multiprocessing, concurrent.futures, loky, pebble",
        description=(
            "Run the benchmark scenarios for paas and its peers (needs the bench "
            "extra); arguments after 'bench' go to the benchmark runner, e.g. "
            "'paas bench --quick'."
        ),
    )
    parser.set_defaults(run=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    try:
        from benchmarks import cli as bench_cli
    except ModuleNotFoundError as exc:
        print(
            f"paas bench: cannot import {exc.name}; install the bench extra: "
            "pip install 'paas[bench]'",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    return int(bench_cli.main(args.bench_args))


_SUBCOMMANDS: tuple[Callable[[_Subparsers], None], ...] = (
    _add_demo,
    _add_status,
    _add_bench,
)


# -- logging --------------------------------------------------------------------


def _enable_logging(level: str) -> None:
    # Replace loguru's own default sink (DEBUG, stderr) rather than add a second.
    logger.remove()
    logger.add(
        _write_to_stderr,
        level=level,
        format=_format_record,
        colorize=sys.stderr.isatty(),
        # Tracebacks without the values of local variables: those can be task
        # inputs, which do not belong in a log.
        diagnose=False,
    )
    logger.enable("paas")


def _write_to_stderr(message: str) -> None:
    # Looked up per message, not bound once: live displays such as rich's progress
    # bars swap sys.stderr for a proxy that prints log lines above the bars.
    sys.stderr.write(message)


def _format_record(record: Record) -> str:
    # Bound context (backend, worker, task, attempt) goes after the message as
    # key=value; the template refers to it by key, so braces in values stay inert.
    context = " ".join(f"{key}={{extra[{key}]}}" for key in record["extra"])
    return (
        "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <8}</level> "
        "<cyan>{name}</cyan> {message}"
        + (f" <dim>{context}</dim>" if context else "")
        + "\n{exception}"
    )


if __name__ == "__main__":
    sys.exit(main())
