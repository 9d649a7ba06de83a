"""The fleet scenario of scripts/fleet-test.sh, driven from one process so the timings are taken
on one clock: clients through HAProxy (PROXY v2 to the replicas), revocations from the CLI,
a replica killed with SIGKILL, PostgreSQL stopped and started. Standard library only, plus the
official Prometheus client's parsers for /metrics.

Usage: python3 fleet_check.py CONFIG.json   (written by fleet-test.sh)
Prints a report; exits 1 on the first acceptance line that does not hold.
"""

import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
import http.client
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

cfg = json.load(open(sys.argv[1]))
PROTOCOL = "2025-06-18"
failures = []


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    failures.append(msg)


def ok(msg):
    print(f"ok: {msg}", flush=True)


def context(name):
    ctx = ssl.create_default_context(cafile=cfg["ca"])
    ctx.load_cert_chain(f"{cfg['clients_dir']}/{name}.crt", f"{cfg['clients_dir']}/{name}.key")
    return ctx


class Conn:
    """One keep-alive HTTPS connection with its own MCP session, calling whoami in a loop."""

    def __init__(self, name, host, port, source, label):
        self.name, self.host, self.port, self.source, self.label = name, host, port, source, label
        self.ctx = context(name)
        self.http = None
        self.session = None
        self.ok_times = []  # start time of each accepted call
        self.failed_at = None  # first failure after `watch_from`
        self.watch_from = None
        self.reconnect = True
        self.stop = False
        self.lock = threading.Lock()

    def _post(self, body, session=True):
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": PROTOCOL,
        }
        if session and self.session:
            headers["mcp-session-id"] = self.session
        self.http.request("POST", "/mcp", json.dumps(body), headers)
        r = self.http.getresponse()
        data = r.read()
        return r.status, r.getheader("mcp-session-id"), data

    def open(self):
        self.http = http.client.HTTPSConnection(
            self.host, self.port, context=self.ctx, timeout=5,
            source_address=(self.source, 0))
        self.session = None
        status, sid, _ = self._post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "fleet-check", "version": "1"}}}, session=False)
        if status != 200:
            raise OSError(f"initialize: HTTP {status}")
        self.session = sid
        self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call(self):
        t = time.time()
        status, _, data = self._post({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                      "params": {"name": "whoami", "arguments": {}}})
        if status == 404:
            # The session lived on another replica (a reconnect through the balancer).
            raise OSError("session not found")
        if status != 200 or b'"isError":true' in data:
            raise OSError(f"tools/call: HTTP {status}")
        with self.lock:
            self.ok_times.append(t)

    def run(self, pause=0.005):
        while not self.stop:
            try:
                if self.http is None:
                    self.open()
                self.call()
            except Exception:
                with self.lock:
                    if self.watch_from is not None and self.failed_at is None:
                        self.failed_at = time.time()
                try:
                    if self.http:
                        self.http.close()
                except Exception:
                    pass
                self.http = None
                if not self.reconnect:
                    return
                time.sleep(0.05)
            time.sleep(pause)

    def accepted_after(self, t):
        with self.lock:
            return sum(1 for x in self.ok_times if x > t)


def start(conn):
    th = threading.Thread(target=conn.run, daemon=True)
    th.start()
    return th


def zt(*args, check=True, home=None):
    cmd = [cfg["mcp_zt"], "--home", home or cfg["admin_home"], "--ledger", cfg["ledger"],
           "--ledger-ca", cfg["ledger_ca"], *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(args)}: {r.stderr.strip()}")
    return r


def scrape(ops):
    with urllib.request.urlopen(f"http://{ops}/metrics", timeout=5) as r:
        text = r.read().decode()
    return list(text_string_to_metric_families(text))


def whoami_allowed(families):
    n = 0
    for fam in families:
        if fam.name == "mcpzt_tool_calls":
            for s in fam.samples:
                if s.name == "mcpzt_tool_calls_total" and s.labels.get("tool") == "whoami" \
                        and s.labels.get("decision") == "allowed":
                    n += s.value
    return n


def handshake_refused(host, port, name, source="127.0.0.1"):
    """True when a fresh connection with NAME's certificate gets no MCP answer."""
    c = Conn(name, host, port, source, "probe")
    try:
        c.open()
        c.call()
        return False
    except Exception:
        return True


replicas = cfg["replicas"]  # [{"name", "port", "ops", "pid", "audit"}]
hp_host, hp_port = "127.0.0.1", cfg["haproxy_port"]
names = [f"fleet-{i:02d}" for i in range(cfg["clients"])]
doomed = names[: cfg["revocations"]]
live = names[cfg["revocations"]:]

# 1. Every client through HAProxy: a fixed number of calls each, then /metrics must count
#    exactly those (counters from the audit decisions, summed over the replicas).
conns = {n: Conn(n, hp_host, hp_port, cfg["client_source"], "lb") for n in names}
before = sum(whoami_allowed(scrape(r["ops"])) for r in replicas)
errors = []


def warm(c):
    try:
        c.open()
        for _ in range(cfg["warm_calls"]):
            c.call()
    except Exception as e:
        errors.append(f"{c.name}: {e}")


threads = [threading.Thread(target=warm, args=(c,)) for c in conns.values()]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    fail(f"{len(errors)} client(s) could not call through HAProxy: {errors[:3]}")
made = sum(len(c.ok_times) for c in conns.values())
after = sum(whoami_allowed(scrape(r["ops"])) for r in replicas)
if after - before != made:
    fail(f"/metrics counts {after - before:.0f} allowed whoami calls, the clients made {made}")
else:
    ok(f"{len(names)} clients through HAProxy made {made} calls; /metrics (parsed by "
       f"prometheus_client's OpenMetrics parser) counts exactly {after - before:.0f}")

# Each doomed certificate also holds a connection straight to every replica, so every replica
# has a live connection of each certificate to cut.
direct = {n: [Conn(n, "127.0.0.1", r["port"], "127.0.0.1", r["name"]) for r in replicas]
          for n in doomed}
for n in names:
    start(conns[n])
for cs in direct.values():
    for c in cs:
        start(c)
time.sleep(1.0)
idle = [c.label + "/" + c.name for cs in direct.values() for c in cs if not c.ok_times]
if idle:
    fail(f"direct connections that never called: {idle[:5]}")

# 2. Revoke 20 certificates from the CLI (an admin HOME with no server: the ledger directly).
lags = []
for n in doomed:
    watched = [conns[n]] + direct[n]
    t0 = time.time()
    for c in watched:
        with c.lock:
            c.watch_from = t0
        c.reconnect = c.label == "lb"  # the balanced client keeps trying to come back
    zt("revoke", n)
    deadline = t0 + 5
    while time.time() < deadline and any(c.failed_at is None for c in watched):
        time.sleep(0.005)
    for c in watched:
        if c.failed_at is None:
            fail(f"{n}: the connection to {c.label} was not cut within 5 s")
        else:
            lags.append(c.failed_at - t0)
    for r in replicas:
        if not handshake_refused("127.0.0.1", r["port"], n):
            fail(f"{n}: {r['name']} accepted a new connection after the revoke")
lags.sort()
p50 = statistics.median(lags)
p99 = lags[min(len(lags) - 1, int(round(0.99 * (len(lags) - 1))))]
print(f"revoke-to-cut over {len(lags)} connections ({len(doomed)} revocations x "
      f"{1 + len(replicas)} connections, every replica): p50 {p50 * 1000:.0f} ms, "
      f"p99 {p99 * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms", flush=True)
budget = cfg["cut_budget_secs"]
if p99 > budget:
    fail(f"revoke-to-cut p99 {p99 * 1000:.0f} ms > {budget} s")
else:
    ok(f"revoke-to-cut p99 <= {budget} s")
late = {n: sum(c.accepted_after(c.failed_at or 0) for c in [conns[n]] + direct[n]) for n in doomed}
if any(late.values()):
    fail(f"calls accepted after the cut: {late}")
else:
    ok("zero calls accepted from a revoked certificate after its cut")

# 3. kill -9 one replica under load: the live clients come back through HAProxy.
victim = replicas[-1]
t_kill = time.time()
os.kill(victim["pid"], signal.SIGKILL)
deadline = t_kill + 15
while time.time() < deadline and any(conns[n].accepted_after(t_kill + 0.5) == 0 for n in live):
    time.sleep(0.05)
stuck = [n for n in live if conns[n].accepted_after(t_kill + 0.5) == 0]
if stuck:
    fail(f"after kill -9 of {victim['name']}: {len(stuck)} live client(s) never got a call "
         f"through again: {stuck[:5]}")
else:
    took = max(min((x for x in conns[n].ok_times if x > t_kill + 0.5), default=0) for n in live)
    ok(f"kill -9 {victim['name']}: all {len(live)} live clients called again through HAProxy "
       f"(the last after {took - t_kill:.1f} s)")
revoked_ok = sum(conns[n].accepted_after(t_kill) for n in doomed)
if revoked_ok:
    fail(f"{revoked_ok} calls accepted from revoked certificates after the kill")
else:
    ok("no revoked certificate accepted while the clients re-balanced")
survivors = replicas[:-1]

# The killed replica comes back (same ports) with --revocation-max-stale 2s.
victim["pid"] = int(subprocess.run([cfg["restart_r3"]], capture_output=True, text=True,
                                   check=True).stdout.split()[-1])
deadline = time.time() + 30
while time.time() < deadline:
    try:
        urllib.request.urlopen(f"http://{victim['ops']}/readyz", timeout=1).read()
        break
    except Exception:
        time.sleep(0.1)
else:
    fail(f"{victim['name']} did not come back after its restart")
if handshake_refused("127.0.0.1", victim["port"], live[0]):
    fail(f"the restarted {victim['name']} refuses a known-good certificate")
elif not handshake_refused("127.0.0.1", victim["port"], doomed[0]):
    fail(f"the restarted {victim['name']} accepts a revoked certificate")
else:
    ok(f"{victim['name']} restarted: it admits known-good certificates and refuses revoked ones")


def status(ops, path):
    try:
        return urllib.request.urlopen(f"http://{ops}{path}", timeout=2).status
    except urllib.error.HTTPError as e:
        return e.code

# 4. PostgreSQL stopped for 10 s.
target = live[-1]
watch = [conns[target]] + [Conn(target, "127.0.0.1", r["port"], "127.0.0.1", r["name"])
                           for r in survivors]
for c in watch[1:]:
    start(c)
time.sleep(0.5)
subprocess.run(cfg["pg_stop"], shell=True, check=True, capture_output=True)
t_down = time.time()
r = zt("revoke", target, check=False)
if r.returncode == 0:
    fail("revoke while PostgreSQL is down succeeded; expected a refusal")
elif "unreachable" not in r.stderr:
    fail(f"revoke while PostgreSQL is down: unclear error: {r.stderr.strip()}")
else:
    ok(f"revoke while PostgreSQL is down is refused (exit {r.returncode}): "
       f"{r.stderr.strip().splitlines()[-1]}")
while time.time() < t_down + cfg["pg_down_secs"]:
    time.sleep(0.1)
held = [n for n in live if conns[n].accepted_after(t_down + 1) == 0]
if held:
    fail(f"known-good clients refused while PostgreSQL was down: {held[:5]}")
else:
    ok(f"all {len(live)} known-good clients kept calling through {cfg['pg_down_secs']} s "
       "without PostgreSQL")
fresh = Conn(live[0], hp_host, hp_port, cfg["client_source"], "probe")
try:
    fresh.open()
    fresh.call()
    ok("new handshakes through HAProxy still admitted within --revocation-max-stale (5 min)")
except Exception as e:
    fail(f"a new handshake was refused while PostgreSQL was down (within max-stale): {e}")
if handshake_refused("127.0.0.1", victim["port"], live[0]):
    ok(f"{victim['name']} (--revocation-max-stale 2s) refuses new handshakes after "
       f"{time.time() - t_down:.0f} s without the database (fail closed)")
else:
    fail(f"{victim['name']} admitted a new handshake past its --revocation-max-stale")
codes = {r["name"]: (status(r["ops"], "/readyz"), status(r["ops"], "/serving")) for r in replicas}
want = {r["name"]: (503, 200) for r in survivors} | {victim["name"]: (503, 503)}
if codes != want:
    fail(f"/readyz and /serving while the database is down: {codes}, expected {want}")
else:
    ok("while the database is down: /readyz 503 everywhere; /serving 200 on the replicas "
       "within max-stale, 503 on the stale one (HAProxy checks /serving)")
subprocess.run(cfg["pg_start"], shell=True, check=True, capture_output=True)
t_up = time.time()
for c in watch:
    with c.lock:
        c.watch_from = t_up
    c.reconnect = False
# The operator repeats the revocation once the database answers.
while True:
    t_try = time.time()
    r = zt("revoke", target, check=False)
    if r.returncode == 0:
        break
    if time.time() - t_up > 10:
        raise SystemExit(f"FAIL: revoke after PostgreSQL's return: {r.stderr.strip()}")
    time.sleep(0.05)
deadline = time.time() + 5
while time.time() < deadline and any(c.failed_at is None for c in watch):
    time.sleep(0.005)
cut = [c.failed_at - t_up for c in watch if c.failed_at is not None]
if len(cut) != len(watch):
    fail("the revocation made after PostgreSQL's return did not cut every connection")
elif max(cut) > 1.0:
    fail(f"the revocation was in force everywhere only {max(cut) * 1000:.0f} ms after the "
         "database's return")
else:
    ok(f"in force on every replica {max(cut) * 1000:.0f} ms after PostgreSQL's return (the "
       f"revoke the database accepted started at +{1000 * (t_try - t_up):.0f} ms)")

deadline = time.time() + 5
while time.time() < deadline and handshake_refused("127.0.0.1", victim["port"], live[0]):
    time.sleep(0.1)
if handshake_refused("127.0.0.1", victim["port"], live[0]):
    fail(f"{victim['name']} still refuses new handshakes 5 s after the database's return")
else:
    ok(f"{victim['name']} admits new handshakes again {time.time() - t_up:.1f} s after the "
       "database's return")

for c in list(conns.values()) + [c for cs in direct.values() for c in cs] + watch:
    c.stop = True

for rep in survivors:
    kinds = [json.loads(x).get("event") for x in open(rep["audit"]) if x.startswith("{")]
    if "ledger_unreachable" not in kinds or "ledger_reconnected" not in kinds:
        fail(f"{rep['name']}: the audit log lacks ledger_unreachable/ledger_reconnected")
ok("audit: ledger_unreachable and ledger_reconnected on every surviving replica")

# 5. The audit logs: real client addresses, and no tool call accepted from a revoked
#    certificate after the replica applied its revocation.
for rep in survivors + [victim]:
    applied, serial_of, bad, peers = {}, {}, 0, set()
    for line in open(rep["audit"]):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "handshake_ok":
            peers.add(e.get("peer", "").rsplit(":", 1)[0])
        if e.get("event") == "revocation_applied" and e.get("serial"):
            applied.setdefault(e["serial"], e["time"])
        if e.get("event") == "tool_allowed":
            s = e.get("serial")
            if s in applied and e["time"] > applied[s]:
                bad += 1
    if bad:
        fail(f"{rep['name']}: {bad} tool call(s) allowed after their certificate's revocation")
    if cfg["balancer_source"] in peers:
        fail(f"{rep['name']}: the audit log shows the balancer's address, not the client's")
    if cfg["client_source"] not in peers:
        fail(f"{rep['name']}: no handshake from the clients' real address in the audit log")
ok(f"audit logs: clients appear as {cfg['client_source']} (PROXY v2), never as the balancer "
   f"{cfg['balancer_source']}; no call allowed after a revocation was applied")

lag_sum = lag_count = 0
for rep in survivors:
    for fam in scrape(rep["ops"]):
        if fam.name == "mcpzt_revocation_propagation_seconds":
            for smp in fam.samples:
                if smp.name.endswith("_sum"):
                    lag_sum += smp.value
                elif smp.name.endswith("_count"):
                    lag_count += smp.value
if lag_count:
    print(f"propagation (mcpzt_revocation_propagation_seconds, commit to applied, "
          f"{lag_count:.0f} notifications): mean {1000 * lag_sum / lag_count:.1f} ms", flush=True)

if failures:
    sys.exit(1)
