"""Helpers shared by the tests: real servers, PostgreSQL databases, clusters, a fake LLM provider."""
