#!/usr/bin/env python3
"""A Python asyncio echo server: an anchor sockserv is measured against (bench/side_by_side.sh).

    asyncio_echo.py tcp://127.0.0.1:0
    asyncio_echo.py unix:///tmp/x.sock

Written as the asyncio docs write one: start_server with a coroutine per connection that reads up to
64 KiB, writes it back and drains. asyncio sets TCP_NODELAY itself. Backlog 128, as sockserv's bench
configs set. Prints `listening: anchor ENDPOINT` once bound; serves until SIGTERM or SIGINT.
"""

import asyncio
import os
import signal
import sys


async def echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(endpoint):
    scheme, _, rest = endpoint.partition("://")
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        server = await asyncio.start_server(echo, host.strip("[]"), int(port), backlog=128)
        host, port = server.sockets[0].getsockname()[:2]
        bound = f"tcp://{host}:{port}"
    elif scheme == "unix":
        if os.path.exists(rest):
            os.unlink(rest)
        server = await asyncio.start_unix_server(echo, rest, backlog=128)
        bound = endpoint
    else:
        sys.exit(f"asyncio_echo.py: tcp:// or unix://, not {endpoint}")
    print(f"listening: anchor {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    if scheme == "unix" and os.path.exists(rest):
        os.unlink(rest)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    asyncio.run(serve(sys.argv[1]))


if __name__ == "__main__":
    main()
