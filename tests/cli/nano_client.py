#!/usr/bin/env python3
"""Host side of the nano invoke protocol (kindling-nano(7)) for the CLI tests.

Connects to fc-launch's hybrid-vsock Unix socket, performs the Firecracker
"CONNECT <port>" handshake, then runs the steps given on the command line on that
one connection:

  hello-repeat N     N invokes of the hello function, each answer checked exactly
  hello-pipeline N   N invokes written at once, then the N answers read and checked
  invoke FILE        invoke with FILE's bytes; print "OK|ERR <body>" on one line
  raw TEXT           send TEXT (with \\n escapes); print the next answer line and body
  stats              print the STATS JSON
  exit STATUS        send EXIT STATUS and read the OK 0
  expect-eof         the guest must close the connection now

Options before the steps: --port=N (default 9000), --timeout=SECONDS (connect and
each answer; default 10).

Exit status: 0 all steps passed, 1 a check failed (the reason on stderr).
"""
import json
import socket
import sys
import threading
import time


class Fail(Exception):
    pass


class Conn:
    def __init__(self, path, port, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.settimeout(timeout)
                self.s.connect(path)
                self.buf = b""
                self.s.sendall(b"CONNECT %d\n" % port)
                line = self.line()
                if not line.startswith(b"OK "):
                    raise Fail("handshake answered %r" % line)
                return
            except (FileNotFoundError, ConnectionRefusedError, Fail, EOFError):
                self.s.close()
                if time.monotonic() > deadline:
                    raise Fail("could not connect to %s port %d" % (path, port))
                time.sleep(0.01)

    def fill(self):
        b = self.s.recv(1 << 20)
        if not b:
            raise EOFError("connection closed by the guest")
        self.buf += b

    def line(self):
        while b"\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def answer(self):
        line = self.line()
        kind, _, n = line.partition(b" ")
        if kind not in (b"OK", b"ERR") or not n.isdigit():
            raise Fail("bad answer line %r" % line)
        return kind.decode(), self.take(int(n))

    def send_invoke(self, payload):
        self.s.sendall(b"INVOKE %d\n" % len(payload) + payload)


def hello_expected(payload):
    return ('{"greeting":"hello from kindling nano","request":%s}' % json.dumps(payload.decode())).encode()


def check_hello(i, kind, body, payload):
    if kind != "OK" or body != hello_expected(payload):
        raise Fail("invoke %d: got %s %r, expected OK %r" % (i, kind, body[:200], hello_expected(payload)[:200]))


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 64
    path, steps = argv[1], argv[2:]
    port, timeout = 9000, 10.0
    while steps and steps[0].startswith("--"):
        name, _, value = steps[0][2:].partition("=")
        if name == "port":
            port = int(value)
        elif name == "timeout":
            timeout = float(value)
        else:
            raise Fail("unknown option %r" % steps[0])
        steps = steps[1:]
    c = Conn(path, port, timeout)
    i = 0
    while i < len(steps):
        step = steps[i]
        if step == "hello-repeat":
            n = int(steps[i + 1]); i += 2
            for k in range(n):
                payload = b'{"n":%d,"s":"tab\there \\"q\\""}' % k
                c.send_invoke(payload)
                kind, body = c.answer()
                check_hello(k, kind, body, payload)
        elif step == "hello-pipeline":
            n = int(steps[i + 1]); i += 2
            payloads = [b"p%d-" % k + b"x" * (k * 37 % 3000) for k in range(n)]
            # Write from a thread: a window smaller than the whole burst needs the
            # answers read while requests are still going out.
            data = b"".join(b"INVOKE %d\n" % len(p) + p for p in payloads)
            writer = threading.Thread(target=c.s.sendall, args=(data,), daemon=True)
            writer.start()
            for k, p in enumerate(payloads):
                kind, body = c.answer()
                check_hello(k, kind, body, p)
            writer.join()
        elif step == "invoke":
            with open(steps[i + 1], "rb") as f:
                payload = f.read()
            i += 2
            c.send_invoke(payload)
            kind, body = c.answer()
            sys.stdout.write("%s %s\n" % (kind, body.decode("utf-8", "replace")))
        elif step == "raw":
            c.s.sendall(steps[i + 1].encode().decode("unicode_escape").encode("latin-1")); i += 2
            kind, body = c.answer()
            sys.stdout.write("%s %s\n" % (kind, body.decode("utf-8", "replace")))
        elif step == "stats":
            i += 1
            c.s.sendall(b"STATS\n")
            kind, body = c.answer()
            if kind != "OK":
                raise Fail("STATS answered %s %r" % (kind, body))
            json.loads(body)
            sys.stdout.write(body.decode() + "\n")
        elif step == "exit":
            c.s.sendall(b"EXIT %d\n" % int(steps[i + 1])); i += 2
            kind, body = c.answer()
            if kind != "OK" or body:
                raise Fail("EXIT answered %s %r" % (kind, body))
        elif step == "expect-eof":
            i += 1
            try:
                while True:
                    c.fill()
            except EOFError:
                pass
        else:
            raise Fail("unknown step %r" % step)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (Fail, EOFError, OSError) as e:
        sys.stderr.write("nano_client: %s\n" % e)
        sys.exit(1)
