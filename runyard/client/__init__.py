"""The Python SDK: the clients, their resources, the SSE decoder, the accumulator, the streams,
the errors and the pages. `runyard/__init__.py` re-exports its public names.

It imports httpx, pydantic and `runyard.domain` only (and aiohttp once a `DefaultAioHttpClient`
is made), never server code, so that it can ship as a light distribution of its own.
"""
