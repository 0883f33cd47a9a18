#!/usr/bin/env python3
"""A fault-injecting TCP proxy for the network fault tests of outbox_saga.

Standard library only.  It listens on --listen (default 127.0.0.1, a free
port), connects every accepted connection to --target HOST:PORT, and passes
bytes both ways, or breaks them as its current mode says:

    pass               bytes flow both ways (the default)
    stall              accepted and read, but nothing is forwarded either
                       way: bytes are held, not lost; back in pass they flow
                       on (a connection whose client gave up meanwhile is
                       closed, its held bytes dropped)
    drop AFTER         the peer's answer is cut: after AFTER more bytes from
                       the target (counted from the switch, or from the
                       start of a new connection) both sides are closed,
                       mid-response
    trickle MS         the peer's answer is passed one byte every MS
                       milliseconds (the client's bytes flow normally)
    reset              new connections are reset at once; an open one is
                       reset (RST: SO_LINGER 0) when either side next sends

The mode applies to open connections as well as new ones.  Controlled over
a line protocol on a second port (--control-port, same host):

    MODE pass | MODE stall | MODE drop 20 | MODE trickle 50 | MODE reset
    CUT                close every open connection now (FIN)
    FREEZE             black-hole every connection open now, for good:
                       nothing flows on it either way and the proxy never
                       closes it, whatever the mode (as when a NAT or a
                       firewall on the way forgets the connection); new
                       connections follow the mode
    STATS              one JSON line: accepted, open, stalled (connections
                       that held bytes), frozen, dropped, reset, trickled (bytes),
                       to_target, to_client (bytes), mode
    QUIT               the proxy ends

Each command is answered with one line ("ok ..." or the JSON, or
"error ...").  --port-file receives "PORT CONTROL_PORT" once both listen
(written atomically).  The proxy ends after --lifetime seconds (default
600), when its parent dies, or on SIGTERM.
"""

import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time


class State:
    """The mode and the counters, behind one condition."""

    def __init__(self):
        self.cond = threading.Condition()
        self.mode = "pass"
        self.arg = 0
        self.gen = 0            # bumped on every MODE command
        self.conns = set()
        self.stats = {"accepted": 0, "stalled": 0, "dropped": 0, "reset": 0,
                      "trickled": 0, "frozen": 0, "to_target": 0, "to_client": 0}

    def set_mode(self, mode, arg):
        with self.cond:
            self.mode, self.arg = mode, arg
            self.gen += 1
            self.cond.notify_all()

    def count(self, key, n=1):
        with self.cond:
            self.stats[key] += n


def reset_socket(sock):
    """Close with RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Conn:
    """One proxied connection: two pump threads share it."""

    def __init__(self, state, client, upstream):
        self.state = state
        self.client = client
        self.upstream = upstream
        self.closed = False
        self.stall_counted = False
        self.frozen = False
        self.lock = threading.Lock()

    def close(self, rst=False):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            if rst:
                reset_socket(s)
            else:
                try:
                    s.close()
                except OSError:
                    pass
        with self.state.cond:
            self.state.conns.discard(self)
            self.state.cond.notify_all()

    def wait_not_stalled(self):
        """Block while the mode is stall; False if the connection closed."""
        st = self.state
        with st.cond:
            while (st.mode == "stall" or self.frozen) and not self.closed:
                if not self.stall_counted:
                    self.stall_counted = True
                    st.stats["stalled"] += 1
                st.cond.wait(0.2)
                if self.client_gone():
                    st.cond.release()
                    try:
                        self.close()
                    finally:
                        st.cond.acquire()
            return not self.closed

    def client_gone(self):
        """Has the client closed or reset its end (held bytes stay unread)?"""
        try:
            return self.client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def pump_to_target(self):
        st = self.state
        try:
            while True:
                data = self.client.recv(65536)
                if not data:
                    break
                if not self.wait_not_stalled():
                    return
                if st.mode == "reset":
                    st.count("reset")
                    self.close(rst=True)
                    return
                self.upstream.sendall(data)
                st.count("to_target", len(data))
        except OSError:
            pass
        self.close()

    def pump_to_client(self):
        st = self.state
        gen = None
        sent = 0
        try:
            while True:
                data = self.upstream.recv(65536)
                if not data:
                    break
                if not self.wait_not_stalled():
                    return
                while data:
                    with st.cond:
                        mode, arg, g = st.mode, st.arg, st.gen
                    if mode == "reset":
                        st.count("reset")
                        self.close(rst=True)
                        return
                    if mode == "drop":
                        if gen != g:
                            gen, sent = g, 0
                        room = max(arg - sent, 0)
                        if room < len(data):
                            if room:
                                self.client.sendall(data[:room])
                                st.count("to_client", room)
                            st.count("dropped")
                            self.close()
                            return
                        sent += len(data)
                    if mode == "trickle":
                        self.client.sendall(data[:1])
                        st.count("to_client", 1)
                        st.count("trickled", 1)
                        data = data[1:]
                        time.sleep(arg / 1000.0)
                        if self.closed:
                            return
                        continue
                    if mode == "stall" or self.frozen:
                        if not self.wait_not_stalled():
                            return
                        continue
                    self.client.sendall(data)
                    st.count("to_client", len(data))
                    data = b""
        except OSError:
            pass
        self.close()


def serve(state, listener, target):
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state.count("accepted")
        with state.cond:
            mode = state.mode
        if mode == "reset":
            state.count("reset")
            reset_socket(client)
            continue
        try:
            upstream = socket.create_connection(target, timeout=5)
            upstream.settimeout(None)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            client.close()
            continue
        conn = Conn(state, client, upstream)
        with state.cond:
            state.conns.add(conn)
        threading.Thread(target=conn.pump_to_target, daemon=True).start()
        threading.Thread(target=conn.pump_to_client, daemon=True).start()


def control(state, sock, stop):
    f = sock.makefile("rw", encoding="utf-8", newline="\n")
    for line in f:
        words = line.split()
        if not words:
            continue
        cmd = words[0].upper()
        if cmd == "MODE" and len(words) >= 2 and words[1] in (
                "pass", "stall", "drop", "trickle", "reset"):
            arg = int(words[2]) if len(words) > 2 else (20 if words[1] == "drop" else 50)
            state.set_mode(words[1], arg)
            reply = "ok %s %d" % (words[1], arg)
        elif cmd == "CUT":
            with state.cond:
                conns = list(state.conns)
            for c in conns:
                c.close()
            reply = "ok cut %d" % len(conns)
        elif cmd == "FREEZE":
            with state.cond:
                for c in state.conns:
                    c.frozen = True
                n = len(state.conns)
                state.stats["frozen"] += n
                state.cond.notify_all()
            reply = "ok frozen %d" % n
        elif cmd == "STATS":
            with state.cond:
                s = dict(state.stats, open=len(state.conns), mode=state.mode)
            reply = json.dumps(s, sort_keys=True)
        elif cmd == "QUIT":
            f.write("ok bye\n")
            f.flush()
            stop()
            return
        else:
            reply = "error unknown command: " + line.strip()
        f.write(reply + "\n")
        f.flush()
    sock.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--target", required=True, help="HOST:PORT")
    parser.add_argument("--port-file")
    parser.add_argument("--lifetime", type=float, default=600)
    args = parser.parse_args()

    host, _, port = args.target.rpartition(":")
    target = (host, int(port))
    state = State()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.listen, args.port))
    listener.listen(256)
    ctl = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ctl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ctl.bind((args.listen, args.control_port))
    ctl.listen(16)

    done = threading.Event()

    def stop(*_):
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    threading.Thread(target=serve, args=(state, listener, target), daemon=True).start()

    def control_loop():
        while True:
            try:
                s, _ = ctl.accept()
            except OSError:
                return
            threading.Thread(target=control, args=(state, s, stop), daemon=True).start()

    threading.Thread(target=control_loop, daemon=True).start()

    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d %d\n" % (listener.getsockname()[1], ctl.getsockname()[1]))
        os.replace(tmp, args.port_file)

    parent = os.getppid()
    deadline = time.time() + args.lifetime
    while not done.wait(0.5):
        if time.time() > deadline or os.getppid() != parent:
            break
    listener.close()
    ctl.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
