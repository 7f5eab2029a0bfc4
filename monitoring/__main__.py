"""`python -m monitoring`: the monitor as its image runs it (settings from SHIFTWATCH_MONITOR_*).

`shiftwatch monitor` runs the same `serve`; this entry needs no CLI framework and none of the
orchestration, so the monitor image carries only the monitor and the contracts.
"""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from monitoring.app import serve
from shiftwatch.settings import MonitorSettings


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = MonitorSettings()
    except (ValidationError, ValueError) as exc:
        print(f"monitor: bad setting: {exc}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
