"""Handlers for config/examples/python.toml: a socketserver handler and an asyncio protocol, plain
Python that runs the same under Python's own servers."""

import asyncio
import socketserver


class Upper(socketserver.StreamRequestHandler):
    """Every line back in capitals, until the client closes."""

    def handle(self):
        for line in self.rfile:
            self.wfile.write(line.upper())


class Echo(asyncio.Protocol):
    """asyncio's echo protocol: every byte back, the connection kept open."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


if __name__ == "__main__":
    # The same classes under Python's own servers, for comparison.
    with socketserver.ThreadingTCPServer(("127.0.0.1", 20200), Upper) as server:
        server.serve_forever()
