"""The web console: agent desktop, supervisor wallboard and call search, admin users; JSON API,
live WebSocket, health, readiness and Prometheus metrics (docs/CONSOLE.md)."""

from console.app import ConsoleServer, create_app
from console.settings import ConsoleSettings

__all__ = ["ConsoleServer", "ConsoleSettings", "create_app"]
