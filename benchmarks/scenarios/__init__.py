"""One module per scenario, each with the same three functions.

    plan(quick) -> Plan                          in the benchmark process
    run_trial(contender, params, emit) -> None   in a trial process
    summarize(plan, results) -> Section          in the benchmark process

``ORDER`` is the order they run and appear in the report.
"""

ORDER = ("dispatch", "proofs", "crash", "startup", "scale")
