"""Typed errors of the engine: what went wrong, in OpenAI's error `type` and `code` words.

Which HTTP status each one is, and the envelope it is sent in, is the edge's business
(`proxy.errors.STATUS`): the engine knows no HTTP.
"""

from __future__ import annotations

import re


class ShenronError(Exception):
    """An error with the OpenAI error fields it should surface as."""

    type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(ShenronError):
    type = "invalid_request_error"
    code = "invalid_request"


class ModelNotFound(ShenronError):
    type = "invalid_request_error"
    code = "model_not_found"


class NotAllowed(ShenronError):
    """A virtual model would reach only models outside the caller's tier."""

    type = "permission_error"
    code = "model_not_allowed"


class NoBackends(ShenronError):
    type = "service_unavailable"
    code = "no_backends"


class MemberFailure(ShenronError):
    """One member could not answer. `kind` becomes the member's status in the metadata."""

    type = "upstream_error"
    code: str | None = "upstream_error"
    kind = "error"

    def __init__(self, member: str, reason: str, **kw: str | None) -> None:
        super().__init__(f"member {member!r} failed: {reason}", **kw)
        self.member = member
        self.reason = reason


class MemberTimeout(MemberFailure):
    type = "timeout_error"
    code = "upstream_timeout"
    kind = "timeout"


_KEYISH = re.compile(r"\b(?:sk|pk|rk|key|org|proj)[-_][A-Za-z0-9*._-]{4,}", re.I)


def redact_keys(text: str) -> str:
    """A message with anything shaped like an API key (`sk-proj-****abcd` too) taken out."""
    return _KEYISH.sub("[redacted]", text)


OPERATOR = {401: "refused the credentials Shenron sends it",
            402: "says its account's billing or quota is exhausted",
            403: "does not allow the credentials Shenron sends it",
            407: "wants proxy credentials Shenron does not have",
            429: "is rate limiting or out of quota for Shenron's credentials"}
"""An upstream's statuses about the operator's account, not the client's request: the backend's failure."""


class UpstreamStatus(MemberFailure):
    """The upstream answered with an HTTP error. A 4xx about the request (a bad body, too large, unknown)
    goes back to the client as it was; one about the operator's credentials, billing or quota (401, 402, 403,
    407, 429) is the backend's failure: the client learns which backend failed, never its message, which
    the operator reads in the log and on /status (`operator_detail`)."""

    def __init__(self, member: str, status: int, message: str, etype: str | None, code: str | None,
                 param: str | None, retry_after: str | None = None) -> None:
        operator = OPERATOR.get(status)
        shown = f"backend {member!r} {operator}" if operator else message
        super().__init__(member, f"HTTP {status}: {shown}", param=None if operator else param)
        self.upstream_status = status
        self.upstream_message = message
        self.retry_after = retry_after if status == 429 and retry_after and retry_after.isdigit() else None
        if operator:
            self.code = "upstream_quota" if status in (402, 429) else "upstream_auth"
            self.type = "service_unavailable" if status in (402, 429) else "upstream_error"
        elif 400 <= status < 500:
            self.message = message
            self.type = etype or "invalid_request_error"
            self.code = code
        else:
            self.code = code or "upstream_error"

    @property
    def operator_detail(self) -> str:
        """What the upstream said, for the operator's log and status page (keys taken out)."""
        return f"HTTP {self.upstream_status}: {redact_keys(self.upstream_message)}"

    @property
    def about_operator(self) -> bool:
        return self.upstream_status in OPERATOR

    @property
    def passes_on(self) -> bool:
        """An upstream 4xx about the request goes back to the client with its own status and message."""
        return 400 <= self.upstream_status < 500 and not self.about_operator

    @property
    def is_client_error(self) -> bool:
        """The request itself is at fault: another member would refuse it too."""
        return self.upstream_status in (400, 413, 422)


class AllMembersFailed(ShenronError):
    """No member produced an answer; the message lists every member's failure."""

    type = "upstream_error"
    code = "all_members_failed"

    def __init__(self, what: str, failures: list[MemberFailure], *, deadline: bool = False) -> None:
        detail = "; ".join(f"{f.member}: {f.reason}" for f in failures) or "no member was tried"
        super().__init__(f"{what}: {detail}")
        self.failures = failures
        self.timed_out = deadline or bool(failures and all(isinstance(f, MemberTimeout) for f in failures))
        if self.timed_out:
            self.type = "timeout_error"
            self.code = "upstream_timeout"
