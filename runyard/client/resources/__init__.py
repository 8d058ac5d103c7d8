"""The resource namespaces of `Runyard` and `AsyncRunyard` (`client.agents`, `client.runs`, `client.threads`,
`client.waits`, `client.users`)."""

from .agents import AgentDeleted, Agents, AsyncAgents
from .async_runs import AsyncRuns
from .run_params import RunCreateParams, ThreadRunCreateParams
from .runs import Runs
from .threads import AsyncThreadRuns, AsyncThreads, ThreadDeleted, ThreadRuns, Threads
from .users import AsyncMemories, AsyncUsers, Memories, MemoryDeleted, Users
from .waits import AsyncWaits, Waits

__all__ = [
    "AgentDeleted",
    "Agents",
    "AsyncAgents",
    "AsyncMemories",
    "AsyncRuns",
    "AsyncThreadRuns",
    "AsyncThreads",
    "AsyncUsers",
    "AsyncWaits",
    "Memories",
    "MemoryDeleted",
    "RunCreateParams",
    "Runs",
    "ThreadDeleted",
    "ThreadRunCreateParams",
    "ThreadRuns",
    "Threads",
    "Users",
    "Waits",
]
