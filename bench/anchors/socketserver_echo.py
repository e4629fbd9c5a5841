#!/usr/bin/env python3
"""Python socketserver echo servers: the anchors sockserv is measured against (bench/side_by_side.sh).

    socketserver_echo.py threading tcp://127.0.0.1:0     # ThreadingTCPServer
    socketserver_echo.py forking   tcp://127.0.0.1:0     # ForkingTCPServer
    socketserver_echo.py threading udp://127.0.0.1:0     # ThreadingUDPServer (a thread per datagram)
    socketserver_echo.py threading unix:///tmp/x.sock    # ThreadingUnixStreamServer
    socketserver_echo.py forking   unix:///tmp/x.sock    # ForkingUnixStreamServer

Written as the socketserver docs write an echo: a BaseRequestHandler that recv()s and sendall()s
until end-of-file. The settings sockserv's bench configs also set: a listen backlog of 128
(request_queue_size), TCP_NODELAY, address reuse; forking allows MAX_CHILDREN children (socketserver's
default of 40 would leave some of 50 persistent connections, or 1 000 idle ones, waiting for ever).
Prints `listening: anchor ENDPOINT` once bound; serves until SIGTERM or SIGINT.
"""

import os
import signal
import socket
import socketserver
import sys

MAX_CHILDREN = int(os.environ.get("MAX_CHILDREN", "1100"))


class StreamEcho(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class TcpEcho(StreamEcho):
    def setup(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class DatagramEcho(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data, self.client_address)


class Settings:
    request_queue_size = 128
    allow_reuse_address = True
    daemon_threads = True
    max_children = MAX_CHILDREN


class ThreadingTCP(Settings, socketserver.ThreadingTCPServer):
    pass


class ForkingTCP(Settings, socketserver.ForkingTCPServer):
    pass


class ThreadingUDP(Settings, socketserver.ThreadingUDPServer):
    pass


class ThreadingUnix(Settings, socketserver.ThreadingUnixStreamServer):
    pass


# socketserver.ForkingUnixStreamServer arrived in Python 3.12; this is its definition.
class ForkingUnix(Settings, socketserver.ForkingMixIn, socketserver.UnixStreamServer):
    pass


SERVERS = {
    ("threading", "tcp"): (ThreadingTCP, TcpEcho),
    ("forking", "tcp"): (ForkingTCP, TcpEcho),
    ("threading", "udp"): (ThreadingUDP, DatagramEcho),
    ("threading", "unix"): (ThreadingUnix, StreamEcho),
    ("forking", "unix"): (ForkingUnix, StreamEcho),
}


def parse(endpoint):
    scheme, _, rest = endpoint.partition("://")
    if scheme == "unix":
        return scheme, rest
    host, _, port = rest.rpartition(":")
    return scheme, (host.strip("[]"), int(port))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    kind, endpoint = sys.argv[1], sys.argv[2]
    scheme, address = parse(endpoint)
    if (kind, scheme) not in SERVERS:
        sys.exit(f"socketserver_echo.py: no {kind} server for {scheme}://")
    server_class, handler = SERVERS[(kind, scheme)]
    if scheme == "unix" and os.path.exists(address):
        os.unlink(address)
    # SIGTERM ends serve_forever cleanly (the bench scripts stop servers with it).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with server_class(address, handler) as server:
        if scheme == "unix":
            bound = f"unix://{address}"
        else:
            host, port = server.server_address[:2]
            bound = f"{scheme}://{host}:{port}"
        print(f"listening: anchor {bound}", flush=True)
        try:
            server.serve_forever()
        except (KeyboardInterrupt, SystemExit):
            pass
        if scheme == "unix":
            os.unlink(address)


if __name__ == "__main__":
    main()
