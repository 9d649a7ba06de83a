#!/usr/bin/env python3
"""Checks the docs a reader copies from: runs every `sh` block marked runnable, refuses unmarked
ones, and checks every relative link and every `scripts/...` path the docs name.

Marks (an HTML comment before the fenced block; blank lines may sit between):
    <!-- docs-check: run -->           the block is run
    <!-- docs-check: skip REASON -->   not run, for the reason given (the outside world, a GUI...)
A hidden block runs in place but is not shown to the reader (waiting for a port, a cleanup):
    <!-- docs-check: hidden
    commands
    -->
The run blocks of one file are one bash script (`set -euo pipefail`), run in a fresh empty
folder (the default CA home ./pki lands there) with mcp-zt first on PATH, HOME a fresh folder,
MCP_ZT_HOME and MCP_ZT_LEDGER unset and `scripts` linked to the repository's scripts/. It runs
in a process group of its own, killed when the script ends, within a time limit.

Usage: docs_check.py --bin MCP_ZT [--root REPO] [FILE.md ...]
"""
import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

MARK = re.compile(r"^<!--\s*docs-check:\s*(run|skip|hidden)\b\s*(.*?)\s*(-->)?\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([A-Za-z0-9_+-]*)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SCRIPT_PATH = re.compile(r"(?<![\w./-])scripts/[A-Za-z0-9_.*/-]*[A-Za-z0-9_*]")
TIME_LIMIT = int(os.environ.get("DOCS_CHECK_SECONDS", "180"))


class Block:
    def __init__(self, kind, line, text, reason=""):
        self.kind, self.line, self.text, self.reason = kind, line, text, reason


def parse(path):
    """The file's sh blocks and hidden blocks, in order, and the errors found on the way."""
    lines = open(path, encoding="utf-8").read().split("\n")
    blocks, errors = [], []
    pending = None  # (kind, reason, line) of the last mark not yet attached to a block
    i = 0
    while i < len(lines):
        line = lines[i]
        m = MARK.match(line.strip())
        if m and m.group(1) == "hidden":
            body, j = [], i + 1
            if m.group(3):
                errors.append(f"{path}:{i + 1}: an empty hidden block")
            while j < len(lines) and lines[j].strip() != "-->":
                body.append(lines[j])
                j += 1
            if j == len(lines):
                errors.append(f"{path}:{i + 1}: hidden block without its closing -->")
            blocks.append(Block("hidden", i + 1, "\n".join(body)))
            i = j + 1
            continue
        if m:
            if not m.group(3):
                errors.append(f"{path}:{i + 1}: a docs-check mark must be one line ending in -->")
            if m.group(1) == "skip" and not m.group(2):
                errors.append(f"{path}:{i + 1}: 'docs-check: skip' needs a reason")
            pending = (m.group(1), m.group(2), i + 1)
            i += 1
            continue
        f = FENCE.match(line)
        if f:
            fence, lang = f.group(2), f.group(3).lower()
            body, j = [], i + 1
            while j < len(lines) and not lines[j].strip().startswith(fence):
                body.append(lines[j][len(f.group(1)):] if lines[j].startswith(f.group(1)) else lines[j])
                j += 1
            if lang in ("sh", "bash", "shell"):
                if pending is None:
                    errors.append(
                        f"{path}:{i + 1}: a {lang} block without a docs-check mark "
                        "(<!-- docs-check: run --> or <!-- docs-check: skip REASON -->)")
                else:
                    blocks.append(Block(pending[0], i + 1, "\n".join(body), pending[1]))
            elif pending is not None:
                errors.append(f"{path}:{pending[2]}: a docs-check mark before a {lang or 'plain'} block")
            pending = None
            i = j + 1
            continue
        if line.strip() and pending is not None:
            errors.append(f"{path}:{pending[2]}: a docs-check mark not followed by a code block")
            pending = None
        i += 1
    return blocks, errors


def fenced_spans(text):
    """Line ranges inside fences, where links are code, not links."""
    inside, spans = None, set()
    for n, line in enumerate(text.split("\n")):
        f = FENCE.match(line)
        if f and inside is None:
            inside = f.group(2)
        elif inside is not None and line.strip().startswith(inside):
            inside = None
        elif inside is not None:
            spans.add(n)
    return spans


def check_paths(path, root):
    """Relative links must resolve; `scripts/...` paths must exist."""
    errors, links, scripts = [], 0, 0
    text = open(path, encoding="utf-8").read()
    code = fenced_spans(text)
    base = os.path.dirname(os.path.abspath(path))
    for n, line in enumerate(text.split("\n")):
        if n not in code:
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                    continue
                links += 1
                file = target.split("#", 1)[0]
                if not os.path.exists(os.path.join(base, file)):
                    errors.append(f"{path}:{n + 1}: link to {target}: no such file")
        for p in SCRIPT_PATH.findall(line):
            scripts += 1
            p = p.rstrip(".")
            if not glob.glob(os.path.join(root, p)):
                errors.append(f"{path}:{n + 1}: {p}: no such file in the repository")
    return errors, links, scripts


def run_file(path, blocks, binary, root):
    """Runs the file's run and hidden blocks as one script; True when it exits 0."""
    script = ["set -euo pipefail"]
    for b in blocks:
        if b.kind in ("run", "hidden"):
            script.append(f"echo '--- docs-check: {os.path.basename(path)}:{b.line} ({b.kind})' >&2")
            script.append(b.text)
    work = tempfile.mkdtemp(prefix="docs-check-")
    try:
        cwd, home, bindir = (os.path.join(work, d) for d in ("cwd", "home", "bin"))
        for d in (cwd, home, bindir):
            os.mkdir(d)
        os.symlink(os.path.abspath(binary), os.path.join(bindir, "mcp-zt"))
        os.symlink(os.path.join(root, "scripts"), os.path.join(cwd, "scripts"))
        env = {k: v for k, v in os.environ.items()
               if k not in ("MCP_ZT_HOME", "MCP_ZT_LEDGER", "MCP_ZT_LEDGER_CA",
                            "MCP_ZT_CA_PASSPHRASE_FILE")}
        env.update(HOME=home, PATH=bindir + os.pathsep + env.get("PATH", "/usr/bin:/bin"))
        with open(os.path.join(work, "blocks.sh"), "w") as f:
            f.write("\n".join(script) + "\n")
        proc = subprocess.Popen(["bash", os.path.join(work, "blocks.sh")], cwd=cwd, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=TIME_LIMIT)
        except subprocess.TimeoutExpired:
            print(f"docs-check: {path}: still running after {TIME_LIMIT} s", file=sys.stderr)
            rc = -1
        finally:
            # Whatever the blocks left running (servers started with &) ends with them.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        return rc == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="the mcp-zt binary the blocks run")
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--no-run", action="store_true", help="check marks and paths only")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    files = a.files or ([os.path.join(root, f) for f in ("README.md", "ARCHITECTURE.md", "SECURITY.md")
                         if os.path.exists(os.path.join(root, f))]
                        + sorted(glob.glob(os.path.join(root, "docs", "*.md"))))
    if not os.access(a.bin, os.X_OK):
        sys.exit(f"docs-check: {a.bin} is not an executable mcp-zt (build it first)")
    errors, ran, skipped, hidden, links, scripts, failed = [], 0, [], 0, 0, 0, []
    for path in files:
        blocks, errs = parse(path)
        errors += errs
        e, nl, ns = check_paths(path, root)
        errors += e
        links, scripts = links + nl, scripts + ns
        runs = [b for b in blocks if b.kind == "run"]
        skipped += [(path, b) for b in blocks if b.kind == "skip"]
        hidden += sum(1 for b in blocks if b.kind == "hidden")
        if runs and not errs and not a.no_run:
            rel = os.path.relpath(path, root)
            print(f"== {rel}: {len(runs)} runnable block(s)", file=sys.stderr)
            if run_file(path, blocks, a.bin, root):
                ran += len(runs)
                print(f"ok: {rel}: {len(runs)} block(s) ran", file=sys.stderr)
            else:
                failed.append(rel)
    for path, b in skipped:
        print(f"not runnable: {os.path.relpath(path, root)}:{b.line}: {b.reason}")
    for e in errors:
        print(f"FAIL: {os.path.relpath(e, root) if e.startswith('/') else e}")
    for f in failed:
        print(f"FAIL: {f}: a runnable block failed (its output is above)")
    print(f"docs-check: {len(files)} files; ran {ran} blocks ({hidden} hidden steps), "
          f"{len(skipped)} marked not runnable; {links} relative links and {scripts} scripts/ "
          f"paths checked; {len(errors) + len(failed)} problems")
    sys.exit(1 if errors or failed else 0)


if __name__ == "__main__":
    main()
