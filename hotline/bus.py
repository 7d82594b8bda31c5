"""The event bus: in-process by default. Notifications only; the database holds the truth."""

from __future__ import annotations

import logging
from collections.abc import Callable

from hotline.events import Event

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]


class EventBus:
    """Delivers each event to every listener synchronously; a failing listener is logged, not fatal."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("call %s: listener failed on %s", event.call_id, event.topic)
