"""Routing: queues and agents, who takes the call when the robot cannot finish it."""

from routing.queue import Agent, Queue

__all__ = ["Agent", "Queue"]
