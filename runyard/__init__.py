"""Runyard: the Python SDK of a self-hostable service for agent runs.

```python
from runyard import Runyard

client = Runyard()  # RUNYARD_BASE_URL and RUNYARD_API_KEY from the environment
with client.runs.stream("Say hello", name="greeter", instructions="Be brief.") as stream:
    for event in stream:
        print(event.type, event.data)
```

Runs with `human_in_the_loop=True` may pause for a human: `runs.wait(..., on_question=,
on_approval=, on_input=)` answers through callbacks, streams yield a `RunWaiting` event, and
`runs.answer`, `runs.approve`, `runs.input` and `runs.reply` answer by hand.

Your own Python functions become tools the run calls back: `create_and_wait`, `stream` and
`wait` take `tools={"lookup_order": lookup_order}`, run each call here and post its result
(`runs.tool_results` posts by hand). `files.upload` and `runs.create(files=[...])` give a run
files, `runs.files` reads what it wrote, and `variables=` fill an agent's `message_template`.

Importing this package loads only httpx, pydantic and the shared models of `runyard.domain`.
"""

from ._events import Event, RunWaiting
from ._usage import UsageGroup, UsageReport
from ._version import __version__
from ._versions import AgentVersion
from ._webhooks import Webhook, WebhookDelivery, WebhookSecret
from .client.accumulator import RunAccumulator
from .client.client import AsyncRunyard, DefaultAioHttpClient, Runyard
from .client.exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    RunFailedError,
    RunyardError,
    StreamClosedError,
    TimeoutError,
    ValidationError,
)
from .client.pagination import AsyncPage, AsyncPaginator, SyncPage
from .client.resources import (
    AgentDeleted,
    FileDeleted,
    MemoryDeleted,
    RunCreateParams,
    ThreadDeleted,
    WebhookDeleted,
)
from .client.sse import ServerSentEvent, SSEDecoder
from .client.streams import AsyncRunStream, RunStream
from .client.types import NOT_GIVEN, NotGiven
from .domain import (
    Agent,
    ClientTool,
    File,
    MCPServer,
    Memory,
    Run,
    RunLimits,
    RunStatus,
    Thread,
    ThreadMessage,
    Usage,
    Wait,
)

# One case-insensitive order, as tests/sdk/test_exported_members.py pins it (ruff's own order differs).
__all__ = [  # noqa: RUF022
    "__version__",
    "Agent",
    "AgentDeleted",
    "AgentVersion",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncPage",
    "AsyncPaginator",
    "AsyncRunStream",
    "AsyncRunyard",
    "AuthenticationError",
    "BadRequestError",
    "ClientTool",
    "ConflictError",
    "DefaultAioHttpClient",
    "Event",
    "File",
    "FileDeleted",
    "InternalServerError",
    "MCPServer",
    "Memory",
    "MemoryDeleted",
    "NOT_GIVEN",
    "NotFoundError",
    "NotGiven",
    "PayloadTooLargeError",
    "RateLimitError",
    "Run",
    "RunAccumulator",
    "RunCreateParams",
    "RunFailedError",
    "RunLimits",
    "RunStatus",
    "RunStream",
    "RunWaiting",
    "Runyard",
    "RunyardError",
    "ServerSentEvent",
    "SSEDecoder",
    "StreamClosedError",
    "SyncPage",
    "Thread",
    "ThreadDeleted",
    "ThreadMessage",
    "TimeoutError",
    "Usage",
    "UsageGroup",
    "UsageReport",
    "ValidationError",
    "Wait",
    "Webhook",
    "WebhookDeleted",
    "WebhookDelivery",
    "WebhookSecret",
]

# Errors and models print as `runyard.NotFoundError`, not `runyard.client.exceptions.NotFoundError`.
__locals = locals()
for __name in __all__:
    if not __name.startswith("__") and isinstance(__locals[__name], type):
        __locals[__name].__module__ = "runyard"
