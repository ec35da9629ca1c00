#!/usr/bin/env python3
"""A small HTTP/1.1 proxy in front of an S3 endpoint (s3rver) for the s3 tests.

    s3_faulty_proxy.py UPSTREAM PORTFILE LOG [options]

Listens on 127.0.0.1 (port chosen by the kernel, written to PORTFILE), forwards every
request to UPSTREAM (http://host:port) and appends one line per request to LOG:
    METHOD PATH STATUS [fault]
(a delayed request gets a "METHOD PATH - slow" line when it arrives and another with
its status when answered).  Faults are per key (method + path), so they are deterministic whatever the order of
parallel requests:
  --fail-per-key N     the first N requests for each key get 503 SlowDown
  --status CODE        the status of those failures (default 503)
  --slow-per-key N     the first N requests for each key (after the failures) are
                       held DELAY seconds before being forwarded
  --delay SECS         (default 3)
  --methods LIST       only these methods get faults (default GET,HEAD,PUT)
  --verify-secret KEY  check each request's SigV4 Authorization header against the
                       secret KEY (and x-amz-content-sha256 against the body); a
                       mismatch is answered 403 SignatureDoesNotMatch.  s3rver does
                       not check signatures itself; this makes the tests do it.
"""
import argparse
import hashlib
import hmac
import http.client
import http.server
import socketserver
import sys
import threading
import time
import urllib.parse

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate", "content-length"}


def sigv4_expected(method, raw_path, headers, secret):
    """Recomputes the signature from the request as received (SigV4, S3 rules)."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return None, "no AWS4-HMAC-SHA256 Authorization header"
    fields = {}
    for part in auth[len("AWS4-HMAC-SHA256 "):].split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    cred = fields.get("Credential", "").split("/")
    if len(cred) != 5:
        return None, "bad Credential"
    _, date8, region, service, _ = cred
    signed = fields.get("SignedHeaders", "").split(";")
    path, _, query = raw_path.partition("?")
    curi = urllib.parse.quote(urllib.parse.unquote(path), safe="/-_.~")
    q = sorted((urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~"))
               for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True))
    cquery = "&".join(f"{k}={v}" for k, v in q)
    chdrs = "".join(f"{h}:{' '.join(headers.get(h, '').split())}\n" for h in signed)
    creq = "\n".join([method, curi, cquery, chdrs, ";".join(signed),
                      headers.get("x-amz-content-sha256", "")])
    amz_date = headers.get("x-amz-date", "")
    scope = f"{date8}/{region}/{service}/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for m in (date8, region, service, "aws4_request"):
        k = hmac.new(k, m.encode(), hashlib.sha256).digest()
    return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest(), fields.get("Signature", "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("upstream")
    ap.add_argument("portfile")
    ap.add_argument("log")
    ap.add_argument("--fail-per-key", type=int, default=0)
    ap.add_argument("--status", type=int, default=503)
    ap.add_argument("--slow-per-key", type=int, default=0)
    ap.add_argument("--delay", type=float, default=3.0)
    ap.add_argument("--methods", default="GET,HEAD,PUT")
    ap.add_argument("--verify-secret")
    a = ap.parse_args()
    up = urllib.parse.urlparse(a.upstream)
    methods = set(a.methods.split(","))
    seen = {}
    lock = threading.Lock()
    logf = open(a.log, "a", buffering=1)
    local = threading.local()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def note(self, status, fault=""):
            with lock:
                logf.write(f"{self.command} {self.path} {status}{' ' + fault if fault else ''}\n")

        def reply(self, status, body=b"", headers=(), length=None):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            # A HEAD answer carries the object's length, not its own (empty) body's.
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def error_xml(self, status, code, msg):
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                    f"<Message>{msg}</Message></Error>").encode()
            self.reply(status, body, [("Content-Type", "application/xml")])

        def handle_any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            hdrs = {k.lower(): v for k, v in self.headers.items()}
            if a.verify_secret is not None:
                want, got = sigv4_expected(self.command, self.path, hdrs, a.verify_secret)
                ph = hdrs.get("x-amz-content-sha256", "")
                if want is None or not hmac.compare_digest(want, got):
                    self.note(403, "bad-signature")
                    return self.error_xml(403, "SignatureDoesNotMatch",
                                          "The request signature we calculated does not match "
                                          "the signature you provided.")
                if len(ph) == 64 and ph != hashlib.sha256(body).hexdigest():
                    self.note(400, "bad-payload-hash")
                    return self.error_xml(400, "XAmzContentSHA256Mismatch",
                                          "The provided 'x-amz-content-sha256' header does not "
                                          "match what was computed.")
            key = self.command + " " + self.path
            with lock:
                k = seen.get(key, 0)
                seen[key] = k + 1
            if self.command in methods and k < a.fail_per_key:
                self.note(a.status, "injected")
                return self.error_xml(a.status, "SlowDown" if a.status == 503 else "InternalError",
                                      "injected by s3_faulty_proxy")
            fault = ""
            if self.command in methods and k < a.fail_per_key + a.slow_per_key:
                self.note("-", "slow")  # now: the client may give up before the answer
                time.sleep(a.delay)
                fault = "after-slow"
            conn = getattr(local, "conn", None)
            for tries in (0, 1):
                if conn is None:
                    conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                    local.conn = conn
                try:
                    fwd = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                    fwd["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=fwd)
                    resp = conn.getresponse()
                    data = resp.read()
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = local.conn = None
                    if tries:
                        self.note(502, "upstream-down")
                        return self.error_xml(502, "BadGateway", "upstream unreachable")
            self.note(resp.status, fault)
            try:
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.reply(resp.status, data,
                           [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP], length)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout): that is the point of --delay

        do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = handle_any

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    srv = Server(("127.0.0.1", 0), Handler)
    with open(a.portfile + ".tmp", "w") as f:
        f.write(f"{srv.server_address[1]}\n")
    import os
    os.rename(a.portfile + ".tmp", a.portfile)
    print(f"s3_faulty_proxy: listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
