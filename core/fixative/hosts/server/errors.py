"""The one error type routes raise: answered as ``{"error": message}`` with its HTTP status."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
