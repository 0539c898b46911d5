#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/qemu-run.py - one QEMU post-copy migration for bench/qemu.sh, measured over QMP.

Starts a destination QEMU (-incoming defer) and a source QEMU with the same machine, waits until
the source guest (bench/qemu/guest.c) says it has filled its memory, then `migrate` and at once
`migrate-start-postcopy`, and times the rest from the MIGRATION events' own timestamps. Prints
one JSON object on stdout; the QEMU consoles and a log stay in --workdir. Every QEMU it starts is
killed before it returns (and by the kernel if this script dies: PR_SET_PDEATHSIG).
Exit 0 measured, 1 failed (reason on stderr and in the JSON's "error").
"""
import argparse
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time


def die_with_parent():
    # PR_SET_PDEATHSIG = 1: QEMU gets SIGKILL when this script goes, however it goes.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class QMP:
    """A QMP client on a unix socket: commands in order, events kept with their timestamps."""

    def __init__(self, path, deadline):
        self.events = []
        self.buf = b""
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise RuntimeError("no QMP socket at %s" % path)
                time.sleep(0.05)
        self.deadline = deadline
        self._read()  # the greeting
        self.cmd("qmp_capabilities")

    def _read(self, timeout=None):
        while b"\n" not in self.buf:
            left = self.deadline - time.monotonic()
            if timeout is not None:
                left = min(left, timeout)
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("QMP connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if r is None:
                raise RuntimeError("QMP %s: no answer in time" % name)
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise RuntimeError("QMP %s: %s" % (name, r["error"].get("desc", r["error"])))
            return r.get("return")

    def poll_events(self, timeout):
        """Read whatever events arrive within timeout seconds."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            r = self._read(left)
            if r is None:
                return
            if "event" in r:
                self.events.append(r)

    def migration_status(self, want):
        """Timestamp (s, wall clock) of the first MIGRATION event with a status in want."""
        for e in self.events:
            if e["event"] == "MIGRATION" and e["data"]["status"] in want:
                ts = e["timestamp"]
                return e["data"]["status"], ts["seconds"] + ts["microseconds"] / 1e6
        return None, None


def wait_log(path, marker, deadline, procs):
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                text = f.read().decode(errors="replace")
            if marker in text:
                return text
        except FileNotFoundError:
            pass
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError("QEMU exited (status %s) before '%s'" % (p.returncode, marker))
        time.sleep(0.1)
    raise RuntimeError("no '%s' in %s in time" % (marker, path))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qemu", required=True)
    ap.add_argument("--datadir", action="append", default=[])
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--mem", default="1280M")
    ap.add_argument("--variant", choices=["plain", "preempt"], default="plain")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--guest", choices=["busy", "idle"], default="busy",
                    help="busy: the guest reads its memory without pause; idle: every 10 s")
    a = ap.parse_args()
    # a TERM (bench/qemu.sh's trap, timeout) unwinds through the finally that kills QEMU
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    deadline = time.monotonic() + a.timeout
    os.makedirs(a.workdir, exist_ok=True)
    w = lambda n: os.path.join(a.workdir, n)
    for n in ("src.qmp", "dst.qmp", "src.console", "dst.console"):
        try:
            os.unlink(w(n))
        except FileNotFoundError:
            pass
    base = [a.qemu]
    for d in a.datadir:
        base += ["-L", d]
    base += ["-machine", "q35,accel=tcg", "-cpu", "max", "-smp", "1", "-m", a.mem,
             "-nodefaults", "-display", "none", "-no-reboot",
             "-kernel", a.kernel, "-initrd", a.initrd,
             "-append", "console=ttyS0 quiet panic=-1" +
             (" PAGEIN_QEMU_IDLE=1" if a.guest == "idle" else "")]
    procs = []
    out = {"variant": a.variant, "guest_mode": a.guest}
    log = open(w("qemu.log"), "w")
    try:
        for side in ("dst", "src"):
            cmd = base + ["-serial", "file:" + w(side + ".console"),
                          "-qmp", "unix:%s,server=on,wait=off" % w(side + ".qmp"),
                          "-pidfile", w(side + ".pid")]
            if side == "dst":
                cmd += ["-incoming", "defer"]
            log.write(" ".join(cmd) + "\n")
            log.flush()
            procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, preexec_fn=die_with_parent))
        dst = QMP(w("dst.qmp"), deadline)
        src = QMP(w("src.qmp"), deadline)
        caps = ["postcopy-ram", "events"]
        if a.variant == "preempt":
            # needs -incoming defer and the capability set before migrate-incoming (QEMU 8.1+)
            caps.append("postcopy-preempt")
        for q, extra in ((dst, ["postcopy-blocktime"]), (src, [])):
            q.cmd("migrate-set-capabilities",
                  capabilities=[{"capability": c, "state": True} for c in caps + extra])
        # precopy's default cap is 128 MiB/s; lift it so that QEMU switches over as soon as it can
        src.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        dst.cmd("migrate-incoming", uri="tcp:127.0.0.1:0")
        port = None
        for sa in dst.cmd("query-migrate").get("socket-address", []):
            if sa.get("type") == "inet":
                port = sa["port"]
        if not port:
            raise RuntimeError("the destination did not report its listening port")
        text = wait_log(w("src.console"), "PAGEIN-QEMU-FILLED", deadline, procs)
        filled = [l for l in text.splitlines() if "PAGEIN-QEMU-FILLED" in l][0]
        out["guest"] = filled.strip()
        t_migrate = time.time()
        src.cmd("migrate", uri="tcp:127.0.0.1:%s" % port)
        t0 = time.time()
        src.cmd("migrate-start-postcopy")
        # wait for both ends: the destination completes when its last page is in place
        done = {"completed", "failed", "cancelled"}
        while time.monotonic() < deadline:
            if src.migration_status(done)[0] and dst.migration_status(done)[0]:
                break
            src.poll_events(0.02)
            dst.poll_events(0.02)
        s_state, s_done = src.migration_status(done)
        d_state, d_done = dst.migration_status(done)
        if s_state != "completed" or d_state != "completed":
            raise RuntimeError("migration did not complete: source %s, destination %s" %
                               (s_state, d_state))
        _, s_post = src.migration_status({"postcopy-active"})
        out["migrate_to_postcopy_cmd_s"] = t0 - t_migrate
        out["switchover_s"] = (s_post - t0) if s_post else None
        out["postcopy_s"] = d_done - t0
        out["postcopy_src_s"] = s_done - t0
        out["total_s"] = d_done - t_migrate
        si = src.cmd("query-migrate")
        di = dst.cmd("query-migrate")
        ram = si.get("ram", {})
        out["src_total_time_ms"] = si.get("total-time")
        out["downtime_ms"] = si.get("downtime")
        out["ram_transferred_mib"] = ram.get("transferred", 0) / 2**20
        out["ram_total_mib"] = ram.get("total", 0) / 2**20
        out["normal_pages"] = ram.get("normal")
        out["zero_pages"] = ram.get("duplicate")
        out["postcopy_requests"] = ram.get("postcopy-requests")
        out["mbps"] = ram.get("mbps")
        out["blocktime_ms"] = di.get("postcopy-blocktime")
        # the destination guest keeps reading and checking every page: wait for its next line
        t_ver = time.monotonic() + (15 if a.guest == "busy" else 30)
        verified = None
        while time.monotonic() < min(t_ver, deadline):
            try:
                with open(w("dst.console"), "rb") as f:
                    lines = [l for l in f.read().decode(errors="replace").splitlines()
                             if "PAGEIN-QEMU-PASS" in l]
            except FileNotFoundError:
                lines = []
            if lines:
                verified = lines[-1].strip()
                break
            time.sleep(0.2)
        out["dst_guest"] = verified
        out["verified"] = bool(verified) and verified.endswith(" bad 0")
        if not out["verified"]:
            raise RuntimeError("the destination guest did not confirm its memory: %s" % verified)
        print(json.dumps(out))
        return 0
    except Exception as e:  # noqa: BLE001 - one line for the caller, then the kill below
        out["error"] = str(e)
        print(json.dumps(out))
        print("qemu-run: %s (logs in %s)" % (e, a.workdir), file=sys.stderr)
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        log.close()


if __name__ == "__main__":
    sys.exit(main())
