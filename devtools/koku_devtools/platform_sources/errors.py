"""Errors the stand-in answers with the Platform Sources error document."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered with the Platform Sources error document."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def not_found(kind: str) -> ApiError:
    """404 with the service's ``"<type> not found"`` text."""
    return ApiError(404, f"{kind} not found")


def bad_request(message: str) -> ApiError:
    """400 with the service's ``"bad request: ..."`` text."""
    return ApiError(400, f"bad request: {message}")
