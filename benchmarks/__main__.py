"""``python -m benchmarks``: see :mod:`benchmarks.cli`."""

# Guarded because spawned worker processes import the main module again.
if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main())
