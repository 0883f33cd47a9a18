#!/usr/bin/env python3
"""A webhook receiver for the tests of outbox_saga's http destinations.

Standard library only.  It listens on 127.0.0.1 or --host (HTTP/1.1, keep-alive, one
thread per connection), verifies Standard Webhooks signatures with its own
HMAC code, answers as scripted, and records every request as one JSON line.

    webhook_receiver.py --log FILE [--host ADDR] [--port N] [--port-file FILE]
                        [--secret whsec_...]... [--lifetime SECONDS]

--port 0 (the default) takes a free port; --port-file receives the port
once the socket listens (written atomically), which is how a test knows the
receiver is up.  The process ends after --lifetime seconds (default 600),
when its parent dies, on SIGTERM/SIGINT, or on POST /_control/shutdown.

Scripting.  The first matching rule decides the answer; without one, the
query string of the request does (?status=503&retry_after=2&delay=0.5), and
without that the answer is 200 "ok".  Rules are replaced with

    POST /_control/rules {"rules": [RULE, ...]}

where a RULE has optional conditions
    "path" (exact, without the query), "path_prefix", "aggregate_id",
    "type" (the event type in the body), "webhook_id", "times" (the rule
    applies to that many requests, then no more)
and the answer
    "status" (default 200), "delay" (seconds before answering),
    "retry_after" (the Retry-After header, a string), "location",
    "headers" (more response headers), "body" (default "ok" for 2xx, else
    a short text), "drop" (true: close the connection without answering).

Other control endpoints: GET /_control/health (200 "ok"), POST
/_control/secrets {"secrets": ["whsec_..."]} (the keys to verify with),
GET /_control/count (requests so far).

The log (--log) gets one JSON object per request, written when the request
arrives (before any delay, so requests in flight are visible):
    seq, time, method, path, query, headers (names lower-cased), body (text),
    webhook_id, aggregate_id, type, signature_valid (true/false, or null
    without secrets), timestamp_ok, status, delay, drop.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 300


class State:
    """Everything the handler threads share, behind one lock."""

    def __init__(self, log_path, secrets):
        self.lock = threading.Lock()
        self.rules = []
        self.secrets = [decode_secret(s) for s in secrets]
        self.seq = 0
        self.log = open(log_path, "a", encoding="utf-8")

    def choose(self, path, query, event):
        """The answer for a request (a dict), consuming a rule's 'times'."""
        with self.lock:
            for rule in self.rules:
                if rule_matches(rule, path, event):
                    if "times" in rule:
                        if rule["times"] <= 0:
                            continue
                        rule["times"] -= 1
                    return dict(rule)
        answer = {}
        for key in ("status", "delay", "retry_after", "location", "body"):
            if key in query:
                answer[key] = query[key][0]
        if "status" in answer:
            answer["status"] = int(answer["status"])
        if "delay" in answer:
            answer["delay"] = float(answer["delay"])
        return answer

    def record(self, entry):
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.log.write(json.dumps(entry, sort_keys=True) + "\n")
            self.log.flush()


def decode_secret(secret):
    if not secret.startswith("whsec_"):
        raise ValueError("a secret starts with whsec_")
    b64 = secret[len("whsec_"):]
    return base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)


def rule_matches(rule, path, event):
    if "path" in rule and rule["path"] != path:
        return False
    if "path_prefix" in rule and not path.startswith(rule["path_prefix"]):
        return False
    for key in ("aggregate_id", "type", "webhook_id"):
        if key in rule and event.get(key) != rule[key]:
            return False
    return True


def verify(keys, msg_id, timestamp, body, header):
    """Standard Webhooks v1: does any signature match any key?"""
    if not keys:
        return None
    if msg_id is None or timestamp is None or header is None:
        return False
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = [
        base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode()
        for k in keys
    ]
    for part in header.split(" "):
        version, _, sig = part.partition(",")
        if version != "v1":
            continue
        for e in expected:
            if hmac.compare_digest(sig, e):
                return True
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "webhook_receiver/1"
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def answer(self, status, body=b"", headers=None):
        """Status line, headers and body in one write (no Nagle stall)."""
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def control(self, path, body):
        state = self.server.state
        if path == "/_control/health":
            return self.answer(200, "ok")
        if path == "/_control/count":
            with state.lock:
                return self.answer(200, str(state.seq))
        if path == "/_control/rules":
            rules = json.loads(body or b"{}").get("rules", [])
            with state.lock:
                state.rules = rules
            return self.answer(200, "ok")
        if path == "/_control/secrets":
            secrets = json.loads(body or b"{}").get("secrets", [])
            keys = [decode_secret(s) for s in secrets]
            with state.lock:
                state.secrets = keys
            return self.answer(200, "ok")
        if path == "/_control/shutdown":
            self.answer(200, "bye")
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return None
        return self.answer(404, "unknown control endpoint")

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        body = self.read_body()
        if url.path.startswith("/_control/"):
            return self.control(url.path, body)

        state = self.server.state
        try:
            event = json.loads(body) if body else {}
            if not isinstance(event, dict):
                event = {}
        except ValueError:
            event = {}
        query = urllib.parse.parse_qs(url.query)
        answer = state.choose(url.path, query, event)
        status = int(answer.get("status", 200))
        delay = float(answer.get("delay", 0))
        drop = bool(answer.get("drop", False))

        msg_id = self.headers.get("webhook-id")
        ts = self.headers.get("webhook-timestamp")
        with state.lock:
            keys = list(state.secrets)
        valid = verify(keys, msg_id, ts, body, self.headers.get("webhook-signature"))
        try:
            ts_ok = abs(time.time() - int(ts)) <= TOLERANCE_SECONDS
        except (TypeError, ValueError):
            ts_ok = False

        state.record({
            "time": time.time(),
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
            "webhook_id": msg_id,
            "aggregate_id": event.get("aggregate_id"),
            "type": event.get("type"),
            "signature_valid": valid,
            "timestamp_ok": ts_ok,
            "status": status,
            "delay": delay,
            "drop": drop,
            "client_port": self.client_address[1],
        })

        if delay > 0:
            time.sleep(delay)
        if drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return None

        headers = dict(answer.get("headers") or {})
        if "retry_after" in answer:
            headers["Retry-After"] = str(answer["retry_after"])
        if "location" in answer:
            headers["Location"] = answer["location"]
        default_body = "ok" if 200 <= status < 300 else "status %d from the receiver" % status
        try:
            self.answer(status, answer.get("body", default_body), headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        return None

    do_POST = handle_any
    do_PUT = handle_any
    do_PATCH = handle_any
    do_GET = handle_any
    do_DELETE = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--secret", action="append", default=[])
    parser.add_argument("--lifetime", type=float, default=600)
    args = parser.parse_args()

    server = Server((args.host, args.port), Handler)
    server.state = State(args.log, args.secret)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    parent = os.getppid()
    deadline = time.time() + args.lifetime

    def watchdog():
        while True:
            time.sleep(0.5)
            if time.time() > deadline or os.getppid() != parent:
                stop()
                return

    threading.Thread(target=watchdog, daemon=True).start()
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
