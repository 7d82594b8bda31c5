"""Routing: queues and agents, who takes the call when the robot cannot finish it.

`CallDistributor` is the ACD (skills, priorities, strategies, ring handling, wrap-up, expected wait,
overflow, callbacks, opening hours, statistics); `CallDistributor.view(name)` is one queue as the call
session uses it. See docs/ROUTING.md.
"""

from routing.agents import (
    AgentDirectory,
    AgentProfile,
    AgentRecord,
    InMemoryAgentDirectory,
    InMemoryReservationStore,
    ReservationStore,
    UnknownAgent,
)
from routing.announce import announce_wait
from routing.clock import Clock, ManualClock, SystemClock
from routing.distributor import (
    AgentSnapshot,
    CallDistributor,
    NotRinging,
    QueueClosed,
    QueueConfig,
    QueueSnapshot,
    QueueView,
    UnknownQueue,
    WaitInfo,
)
from routing.events import (
    AgentReserved,
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallbackDue,
    CallbackRequest,
    CallOverflowed,
    CallQueued,
    MaxWaitReached,
    RoutingEvent,
)
from routing.hours import OpeningHours
from routing.render import render_agents, render_queues
from routing.skills import SkillRequirement, meets, needs_of
from routing.states import AgentState, AgentStatus, IllegalTransition, StateChange
from routing.stats import AbandonedCall, QueueStatistics, RollingMean
from routing.strategies import (
    FewestCalls,
    LongestIdle,
    RoundRobin,
    SkillsWeighted,
    Strategy,
    make_strategy,
    register_strategy,
    strategy_names,
)
from routing.transfer import TargetBusy, TransferDesk, TransferRefused, TransferRequest, queue_for_agent

__all__ = [
    "AbandonedCall",
    "AgentDirectory",
    "AgentProfile",
    "AgentRecord",
    "AgentReserved",
    "AgentSnapshot",
    "AgentState",
    "AgentStateChanged",
    "AgentStatus",
    "CallAbandoned",
    "CallAnswered",
    "CallDistributor",
    "CallOverflowed",
    "CallQueued",
    "CallbackDue",
    "CallbackRequest",
    "Clock",
    "FewestCalls",
    "IllegalTransition",
    "InMemoryAgentDirectory",
    "InMemoryReservationStore",
    "LongestIdle",
    "ManualClock",
    "MaxWaitReached",
    "NotRinging",
    "OpeningHours",
    "QueueClosed",
    "QueueConfig",
    "QueueSnapshot",
    "QueueStatistics",
    "QueueView",
    "ReservationStore",
    "RollingMean",
    "RoundRobin",
    "RoutingEvent",
    "SkillRequirement",
    "SkillsWeighted",
    "StateChange",
    "Strategy",
    "SystemClock",
    "TargetBusy",
    "TransferDesk",
    "TransferRefused",
    "TransferRequest",
    "UnknownAgent",
    "UnknownQueue",
    "WaitInfo",
    "announce_wait",
    "make_strategy",
    "meets",
    "needs_of",
    "queue_for_agent",
    "register_strategy",
    "render_agents",
    "render_queues",
    "strategy_names",
]
