#!/usr/bin/env python3
"""One Python echo handler and one Python echo protocol, served by Python itself: the anchors of
bench/python_echo.sh, which serves the very same classes under sockserv's Python plugin.

    python_echo.py socketserver tcp://127.0.0.1:0    # Echo under socketserver.ThreadingTCPServer
    python_echo.py asyncio      tcp://127.0.0.1:0    # EchoProtocol under asyncio's create_server

Echo is written as the socketserver docs write a handler: recv() and sendall() until end of file.
EchoProtocol is the asyncio docs' echo protocol, without the close after the first reply (the load
keeps each connection open). Both servers get what sockserv's bench configs set: a backlog of 128,
TCP_NODELAY (asyncio sets it itself), address reuse. Prints `listening: anchor ENDPOINT` once
bound; serves until SIGTERM or SIGINT.
"""

import asyncio
import signal
import socket
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def setup(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class ThreadingTCP(socketserver.ThreadingTCPServer):
    request_queue_size = 128
    allow_reuse_address = True
    daemon_threads = True


def address(endpoint):
    scheme, _, rest = endpoint.partition("://")
    if scheme != "tcp":
        sys.exit(f"python_echo.py: tcp:// only, not {endpoint}")
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)


def serve_socketserver(endpoint):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with ThreadingTCP(address(endpoint), Echo) as server:
        host, port = server.server_address[:2]
        print(f"listening: anchor tcp://{host}:{port}", flush=True)
        try:
            server.serve_forever()
        except (KeyboardInterrupt, SystemExit):
            pass


async def serve_asyncio(endpoint):
    loop = asyncio.get_running_loop()
    host, port = address(endpoint)
    server = await loop.create_server(EchoProtocol, host, port, backlog=128)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening: anchor tcp://{host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("socketserver", "asyncio"):
        sys.exit(__doc__)
    if sys.argv[1] == "socketserver":
        serve_socketserver(sys.argv[2])
    else:
        asyncio.run(serve_asyncio(sys.argv[2]))


if __name__ == "__main__":
    main()
