"""Tools that pause the run for a human: offered only when the run has `human_in_the_loop`."""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_ai.exceptions import CallDeferred

__all__ = ["HUMAN_TOOLS", "Question", "ask_user_question", "request_user_input"]


class Question(BaseModel):
    question: str = Field(description="The question, as the user will read it.")
    options: list[str] | None = Field(None, description="Choices to pick from; omit for a free-text answer.")
    multi_select: bool = Field(False, description="Whether several options may be picked.")


async def ask_user_question(questions: list[Question]) -> str:
    """Ask the user one or more clarifying questions and wait for the answers."""
    raise CallDeferred(metadata={"kind": "question"}, kind="question")


async def request_user_input(prompt: str) -> str:
    """Ask the user for free-form input (details, text to work on) and wait for it."""
    raise CallDeferred(metadata={"kind": "input"}, kind="question")


HUMAN_TOOLS = {"ask_user_question": ask_user_question, "request_user_input": request_user_input}
