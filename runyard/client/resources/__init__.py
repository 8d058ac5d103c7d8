"""The resource namespaces of `Runyard` and `AsyncRunyard` (`client.agents`, `client.runs`, `client.threads`,
`client.files`, `client.waits`, `client.users`, `client.webhooks`, `client.usage`)."""

from .agents import AgentDeleted, Agents, AsyncAgents
from .async_runs import AsyncRuns
from .files import AsyncFiles, AsyncRunFiles, AsyncThreadFiles, FileDeleted, Files, RunFiles, ThreadFiles
from .run_params import RunCreateParams, ThreadRunCreateParams
from .runs import Runs
from .threads import AsyncThreadRuns, AsyncThreads, ThreadDeleted, ThreadRuns, Threads
from .usage import AsyncUsageReports, UsageReports
from .users import AsyncMemories, AsyncUsers, Memories, MemoryDeleted, Users
from .waits import AsyncWaits, Waits
from .webhooks import AsyncWebhooks, WebhookDeleted, Webhooks

__all__ = [
    "AgentDeleted",
    "Agents",
    "AsyncAgents",
    "AsyncFiles",
    "AsyncMemories",
    "AsyncRunFiles",
    "AsyncRuns",
    "AsyncThreadFiles",
    "AsyncThreadRuns",
    "AsyncThreads",
    "AsyncUsageReports",
    "AsyncUsers",
    "AsyncWaits",
    "AsyncWebhooks",
    "FileDeleted",
    "Files",
    "Memories",
    "MemoryDeleted",
    "RunCreateParams",
    "RunFiles",
    "Runs",
    "ThreadDeleted",
    "ThreadFiles",
    "ThreadRunCreateParams",
    "ThreadRuns",
    "Threads",
    "UsageReports",
    "Users",
    "Waits",
    "WebhookDeleted",
    "Webhooks",
]
