"""Benchmarks: paas against multiprocessing.Pool, ProcessPoolExecutor, loky, pebble.

Run ``python -m benchmarks`` (``--quick`` for a smoke run) from the project root.

    cli            plans every scenario, runs the trials, writes latest.md/.png
    _harness       one trial = one fresh Python process with a hard timeout;
                   rounds interleave contenders so machine noise hits all alike
    _trial         the entry point inside that process: one scenario, one contender
    scenarios/*    one module per scenario: its plan, its trial, its summary
    _contenders    one adapter per pool library, all with start / run / stop
    _tasks         the functions that run inside worker processes
    _report        the Markdown table (ratios against a named reference)
    _chart         the bar chart (median, min-max error bars)

Nothing here runs in the test suite; numbers from a shared machine are only
comparable as ratios taken within one run.
"""
