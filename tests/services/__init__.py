"""Real servers the test session starts once: a moto emulator and a PostgreSQL cluster."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    """A loopback port nobody listens on right now.

    The servers we start take a port number, not an already bound socket, so there is a tiny
    window in which another process could grab it; a start failure then shows in the server's log.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 40) -> str:
    """The end of a server log, for error messages that explain why a server did not come up."""
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(no log at {path}: {error})"
    return "\n".join(text.splitlines()[-lines:]) or f"(empty log at {path})"
