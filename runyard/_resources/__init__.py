"""The resource namespaces of `Runyard` and `AsyncRunyard` (`client.agents`, `client.runs`, `client.threads`)."""

from .agents import AgentDeleted, Agents, AsyncAgents
from .runs import AsyncRuns, RunCreateParams, Runs
from .threads import AsyncThreadRuns, AsyncThreads, ThreadRuns, Threads

__all__ = [
    "AgentDeleted",
    "Agents",
    "AsyncAgents",
    "AsyncRuns",
    "AsyncThreadRuns",
    "AsyncThreads",
    "RunCreateParams",
    "Runs",
    "ThreadRuns",
    "Threads",
]
