"""Per-check results of the official MCP conformance suite, in a form that diffs well.

`conformance server --output-dir DIR` writes one folder per scenario,
DIR/server-<scenario>-<timestamp>/checks.json: a list of checks ({"id", "status",
"errorMessage", ...}; status SUCCESS, FAILURE, WARNING, SKIPPED or INFO).

Usage: conformance_checks.py DIR              one line per check, sorted: STATUS scenario/check-id
       conformance_checks.py --failures DIR   STATUS scenario/check-id: error (FAILURE, WARNING)
"""

import json
import pathlib
import re
import sys
from typing import Iterator

STAMP = re.compile(r"-\d{4}-\d{2}-\d{2}T[0-9-]+Z$")


def scenario_checks(out_dir: str) -> Iterator[tuple[str, dict]]:
    """Yields (scenario, check) for every check of every scenario folder in out_dir."""
    for checks_file in sorted(pathlib.Path(out_dir).glob("*/checks.json")):
        scenario = STAMP.sub("", checks_file.parent.name).removeprefix("server-")
        for check in json.loads(checks_file.read_text()):
            yield scenario, check


def main(argv: list[str]) -> int:
    if len(argv) == 2:
        lines = [f"{c['status']} {s}/{c['id']}" for s, c in scenario_checks(argv[1])]
        print("\n".join(sorted(lines)))
        return 0
    if len(argv) == 3 and argv[1] == "--failures":
        for scenario, check in scenario_checks(argv[2]):
            if check["status"] in ("FAILURE", "WARNING"):
                error = check.get("errorMessage") or check.get("description", "")
                error = " ".join(error.split())
                print(f"{check['status']} {scenario}/{check['id']}: {error[:300]}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
