"""Checks one crash-test round: every operation the CLI reported as done survived.

Usage: crash_check.py OPS_LOG LIST_JSON CRL_TEXT ROUND    (prints the number of problems)
"""

import json
import re
import sys


def main(ops_path: str, list_path: str, crl_path: str, rnd: str) -> None:
    certs = json.load(open(list_path))
    status = {c["serial"]: c["status"] for c in certs}
    crl = {m.lower() for m in re.findall(r"Serial Number: ([0-9A-Fa-f]+)", open(crl_path).read())}
    problems = 0

    def bad(msg: str) -> None:
        nonlocal problems
        problems += 1
        print(f"round {rnd}: {msg}", file=sys.stderr)

    for line in open(ops_path):
        what, serial = line.split()
        if what == "issued" and serial not in status:
            bad(f"issued {serial} is not in the ledger")
        if what == "revoked":
            if status.get(serial) != "revoked":
                bad(f"revocation of {serial} lost (status {status.get(serial)})")
            if serial not in crl:
                bad(f"revoked {serial} is not in the CRL")
    serials = [c["serial"] for c in certs]
    if len(serials) != len(set(serials)):
        bad("a serial appears twice in the ledger")
    print(problems)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
