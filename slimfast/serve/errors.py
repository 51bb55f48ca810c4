"""The one exception a request handler raises to refuse a request: an HTTP status, a one-line
message and any headers (``Retry-After``); the application turns it into a JSON error."""
from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
