"""Inside one trial process: run one contender through one scenario.

    python -m benchmarks._trial SCENARIO CONTENDER PARAMS_JSON RESULT_PATH DUMP_S

The scenario calls ``emit`` as soon as it has its numbers, before it stops the
pool, so a pool that hangs on shutdown still leaves its measurement behind. The
process then ends with ``os._exit``: exit hooks of a broken pool (joining a
manager thread that waits on a dead worker) must not hold it open; the harness
reaps whatever processes that leaves. A trial still running after DUMP_S seconds
has faulthandler write every thread's stack to its log, just before the
harness's hard timeout kills it, so the log says where it hung.

Only stdlib modules are imported at the top: spawned workers import this module
again as their main module and should not pay for the scenario's imports.
"""

import faulthandler
import importlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    scenario_name, contender, params_json, result_path, dump_s = argv
    faulthandler.dump_traceback_later(float(dump_s), exit=False)
    values: dict[str, Any] = {"notes": []}

    def emit(measured: dict[str, Any]) -> None:
        values.update(measured)
        values["complete"] = True
        _write_atomically(Path(result_path), values)

    try:
        scenario = importlib.import_module(f"benchmarks.scenarios.{scenario_name}")
        scenario.run_trial(contender, json.loads(params_json), emit)
    except BaseException as exc:  # noqa: BLE001 - reported to the harness, then exit
        if values.get("complete"):
            values["notes"].append(f"after measuring: {type(exc).__name__}: {exc}")
        else:
            values["error"] = f"{type(exc).__name__}: {exc}"
            values["traceback"] = traceback.format_exc()
        _write_atomically(Path(result_path), values)
        return 1
    return 0


def _write_atomically(path: Path, values: dict[str, Any]) -> None:
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(json.dumps(values))
    staging.rename(path)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
