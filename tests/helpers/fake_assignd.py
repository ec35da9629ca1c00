#!/usr/bin/env python3
"""A stand-in for assignd (lib/assign/assign_api.h) for routerd's tests.

  fake_assignd.py SOCKET WORKDIR [FC_LAUNCH]

Serves HTTP/1.1 + JSON on the Unix socket SOCKET: /v1/acquire, /v1/release,
/v1/sandboxes, /v1/drain, /metrics.  A cold acquire runs
`fc-launch --restore DIR --vsock WORKDIR/sb-N.sock --console WORKDIR/sb-N.console`
(snapshot {"dir"} only); idle sandboxes are reused; the function's concurrency limit
gives 429 after wait_ms.  Every fc-launch is killed on exit (SIGTERM/SIGINT).
"""
import http.server
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time

SOCK, WORK = sys.argv[1], sys.argv[2]
FC = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(__file__), "../../build/bin/fc-launch")

lock = threading.Condition()
sandboxes = {}   # id -> dict
leases = {}      # lease -> id
counter = [0]


def alive(sb):
    return sb["proc"].poll() is None


def acquire(req):
    fn, ver = req["function"], req.get("version", "$LATEST")
    limit = int(req.get("concurrency", 10))
    deadline = time.monotonic() + int(req.get("wait_ms", 0)) / 1000.0
    with lock:
        while True:
            for sb in sandboxes.values():
                if sb["state"] == "idle" and not alive(sb):
                    sb["state"] = "dead"
            mine = [s for s in sandboxes.values() if s["function"] == fn and s["version"] == ver and s["state"] != "dead"]
            idle = [s for s in mine if s["state"] == "idle"]
            if idle:
                sb = idle[0]
                cold = False
                break
            if len(mine) < limit:
                counter[0] += 1
                sid = "sb-%d" % counter[0]
                sb = {"id": sid, "function": fn, "version": ver, "state": "creating", "invokes": 0,
                      "vsock": os.path.join(WORK, sid + ".sock")}
                sandboxes[sid] = sb
                cold = True
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return 429, {"error": "TooManyRequestsException",
                             "message": "Rate Exceeded: concurrency limit %d of %s reached" % (limit, fn)}
            lock.wait(left)
        if not cold:
            sb["state"] = "busy"
    restore_ms = 0.0
    if cold:
        snap = req.get("snapshot", {})
        if "dir" not in snap:
            with lock:
                sb["state"] = "dead"
            return 503, {"error": "fake assignd: only {\"dir\"} snapshots"}
        t0 = time.monotonic()
        con = open(os.path.join(WORK, sb["id"] + ".console"), "wb")
        sb["proc"] = subprocess.Popen([FC, "--restore", snap["dir"], "--vsock", sb["vsock"]], stdout=con,
                                      stderr=open(os.path.join(WORK, sb["id"] + ".err"), "wb"))
        while not os.path.exists(sb["vsock"]):
            if sb["proc"].poll() is not None or time.monotonic() - t0 > 10:
                with lock:
                    sb["state"] = "dead"
                    lock.notify_all()
                return 503, {"error": "fc-launch --restore %s failed: %s" % (
                    snap["dir"], open(os.path.join(WORK, sb["id"] + ".err")).read().strip())}
            time.sleep(0.001)
        restore_ms = (time.monotonic() - t0) * 1000
    with lock:
        sb["state"] = "busy"
        sb["invokes"] += 1
        counter[0] += 1
        lease = "L%s-%d" % (sb["id"][3:], counter[0])
        leases[lease] = sb["id"]
    return 200, {"sandbox": sb["id"], "vsock": sb["vsock"], "lease": lease, "cold": cold, "restore_ms": restore_ms}


def release(req):
    with lock:
        sid = leases.pop(req.get("lease"), None)
        if sid is None:
            return 404, {"error": "unknown lease"}
        sb = sandboxes[sid]
        if req.get("outcome") == "destroy" or not alive(sb):
            sb["proc"].kill()
            sb["proc"].wait()
            sb["state"] = "dead"
        else:
            sb["state"] = "idle"
        sb["last_used_ms"] = int(time.time() * 1000)
        lock.notify_all()
    return 204, None


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, obj):
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        try:
            req = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            return self.reply(400, {"error": "bad JSON"})
        if self.path == "/v1/acquire":
            return self.reply(*acquire(req))
        if self.path == "/v1/release":
            return self.reply(*release(req))
        if self.path == "/v1/drain":
            with lock:
                for sb in sandboxes.values():
                    if sb["state"] == "idle" and (not req.get("function") or req["function"] == sb["function"]):
                        sb["proc"].kill()
                        sb["state"] = "dead"
            return self.reply(204, None)
        self.reply(404, {"error": "no such path"})

    def do_GET(self):
        if self.path == "/v1/sandboxes":
            with lock:
                out = [{"id": s["id"], "function": s["function"], "version": s["version"], "state": s["state"],
                        "pid": s["proc"].pid if "proc" in s else 0, "vsock": s["vsock"], "invokes": s["invokes"],
                        "last_used_ms": s.get("last_used_ms", 0)} for s in sandboxes.values()]
            return self.reply(200, out)
        if self.path == "/metrics":
            body = "fake_assignd_sandboxes %d\n" % len(sandboxes)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.wfile.write(body.encode())
        self.reply(404, {"error": "no such path"})

    def address_string(self):
        return "unix"

    def log_message(self, fmt, *args):
        sys.stderr.write("fake_assignd: " + (fmt % args) + "\n")


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def stop(*_):
    with lock:
        for sb in sandboxes.values():
            if "proc" in sb and sb["proc"].poll() is None:
                sb["proc"].kill()
                sb["proc"].wait()
    try:
        os.unlink(SOCK)
    except OSError:
        pass
    os._exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
if os.path.exists(SOCK):
    os.unlink(SOCK)
srv = Server(SOCK, H)
print(SOCK, flush=True)
srv.serve_forever()
