"""`client.usage`: what the org's runs used (tokens, cost, credits, runs, durations)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..._usage import UsageGroupBy, UsageReport
from ..types import NOT_GIVEN, NotGivenOr, strip_not_given

if TYPE_CHECKING:
    from ..client import AsyncRunyard, Runyard

__all__ = ["AsyncUsageReports", "UsageReports"]


def _params(**given: Any) -> dict[str, Any]:
    params = strip_not_given(given)
    for name in ("from", "to"):
        if isinstance(params.get(name), datetime):
            params[name] = params[name].isoformat()
    return params


class UsageReports:
    """`client.usage`: the usage report."""

    def __init__(self, client: Runyard) -> None:
        self._client = client

    def retrieve(
        self,
        *,
        since: NotGivenOr[datetime] = NOT_GIVEN,
        until: NotGivenOr[datetime] = NOT_GIVEN,
        group_by: NotGivenOr[UsageGroupBy] = NOT_GIVEN,
        agent_id: NotGivenOr[str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        limit: NotGivenOr[int] = NOT_GIVEN,
    ) -> UsageReport:
        """Runs created in `[since, until)` (default: the last 30 days), in total and per `group_by`
        (`day`, `agent`, `user`, `model`, `route`)."""
        params = _params(
            **{"from": since, "to": until}, group_by=group_by, agent_id=agent_id, user_id=user_id, limit=limit
        )
        return self._client._request_model("GET", "/v1/usage", UsageReport, params=params)


class AsyncUsageReports:
    """`client.usage`: the usage report."""

    def __init__(self, client: AsyncRunyard) -> None:
        self._client = client

    async def retrieve(
        self,
        *,
        since: NotGivenOr[datetime] = NOT_GIVEN,
        until: NotGivenOr[datetime] = NOT_GIVEN,
        group_by: NotGivenOr[UsageGroupBy] = NOT_GIVEN,
        agent_id: NotGivenOr[str] = NOT_GIVEN,
        user_id: NotGivenOr[str] = NOT_GIVEN,
        limit: NotGivenOr[int] = NOT_GIVEN,
    ) -> UsageReport:
        """Runs created in `[since, until)` (default: the last 30 days), in total and per `group_by`
        (`day`, `agent`, `user`, `model`, `route`)."""
        params = _params(
            **{"from": since, "to": until}, group_by=group_by, agent_id=agent_id, user_id=user_id, limit=limit
        )
        return await self._client._request_model("GET", "/v1/usage", UsageReport, params=params)
