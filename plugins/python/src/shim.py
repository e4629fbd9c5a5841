"""The Python half of sockserv's Python plugin: what is easier said in Python than in Rust.

The plugin runs this once, as the module `_sockserv`, when it starts the interpreter. Handlers
never import it; the plugin's Rust code calls these functions.
"""

import asyncio
import importlib.util
import io
import os
import socket
import socketserver
import sys
import traceback


def load_module(path):
    """Import the file at `path` as a module named after it, the way `python path` would see its
    folder (first on sys.path), but not as `__main__`: a script's `if __name__ == "__main__":`
    server does not start. A call to asyncio.run() at import (the asyncio documentation's examples
    end with `asyncio.run(main())`, unguarded) is not run either: the coroutine is closed unrun and
    a line says so, since the server is sockserv's. Returns the module."""
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot import %s: not a Python source file" % path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    real_run = asyncio.run

    def not_run(main, *args, **kwargs):
        close = getattr(main, "close", None)
        if close is not None:
            close()
        print(
            "sockserv: %s called asyncio.run() at import; not run: sockserv serves the module's "
            "protocol classes itself" % path,
            file=sys.stderr,
            flush=True,
        )

    asyncio.run = not_run
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        asyncio.run = real_run
    return module


def kind_of(cls):
    """"socketserver" for a BaseRequestHandler subclass, "protocol" for a class with asyncio
    Protocol's callbacks (an asyncio.Protocol subclass, or one that only quacks like one), else
    None."""
    if not isinstance(cls, type):
        return None
    if issubclass(cls, socketserver.BaseRequestHandler):
        return "socketserver"
    if issubclass(cls, asyncio.BaseProtocol) or callable(getattr(cls, "data_received", None)):
        return "protocol"
    return None


def makefile(sock, mode="r", buffering=None, *, encoding=None, errors=None, newline=None):
    """socket.socket.makefile (Lib/socket.py, PSF licence) over a sockserv request: the same
    socket.SocketIO and io buffers, reading through sock.recv_into and writing through sock.send."""
    if not set(mode) <= {"r", "w", "b"}:
        raise ValueError("invalid mode %r (only r, w, b allowed)" % (mode,))
    writing = "w" in mode
    reading = "r" in mode or not writing
    binary = "b" in mode
    rawmode = ""
    if reading:
        rawmode += "r"
    if writing:
        rawmode += "w"
    raw = socket.SocketIO(sock, rawmode)
    if buffering is None:
        buffering = -1
    if buffering < 0:
        buffering = io.DEFAULT_BUFFER_SIZE
    if buffering == 0:
        if not binary:
            raise ValueError("unbuffered streams must be binary")
        return raw
    if reading and writing:
        buffer = io.BufferedRWPair(raw, raw, buffering)
    elif reading:
        buffer = io.BufferedReader(raw, buffering)
    else:
        buffer = io.BufferedWriter(raw, buffering)
    if binary:
        return buffer
    encoding = io.text_encoding(encoding)
    text = io.TextIOWrapper(buffer, encoding, errors, newline)
    text.mode = mode
    return text


def describe(exc):
    """An exception with its traceback, as Python prints it."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def flush_std():
    """Flush print()'s output, so a handler's lines are out when its request ends (sockserv never
    finalizes the interpreter, which is when Python would flush them)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
