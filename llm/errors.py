"""Typed engine errors, each with a message a person can act on."""

from __future__ import annotations


class LLMError(Exception):
    """Base of every engine error; `message` is safe to show (escape it in HTML)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelNotFound(LLMError):
    """No enabled connection serves this model name."""

    def __init__(self, model: str) -> None:
        super().__init__(f"model '{model}' not found")
        self.model = model


class UpstreamUnavailable(LLMError):
    """The upstream could not be reached or did not answer in time."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class UpstreamError(LLMError):
    """The upstream answered with an error (`status` is its HTTP status).

    An in-band error before any text was produced also lands here, with status 500 (the
    status Ollama itself would have sent had it failed before its first byte).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UpstreamInterrupted(LLMError):
    """The stream broke after it started; `partial` is the text produced until then."""

    def __init__(self, partial: str, reason: str) -> None:
        super().__init__(f"the model's reply was interrupted: {reason}")
        self.partial = partial
        self.reason = reason


class InvalidRequest(LLMError):
    """A request that cannot be translated or sent (`param` names the offending field)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param
