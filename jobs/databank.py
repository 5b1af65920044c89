"""Posting hashed identifiers to a Data Bank: signed JSON batches, retried with exponential backoff.

Signature (so a receiver can verify a request came from this destination and was not altered):
    X-Roster-Key-Id:     the destination's access key id
    X-Roster-Timestamp:  unix seconds when the request was signed
    X-Roster-Signature:  v1=<hex HMAC-SHA256(access key secret, f"{timestamp}.{raw body}")>
    Idempotency-Key:     the same for every retry of one batch (a receiver can drop repeats)
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
from dataclasses import dataclass

import httpx

from models.destinations import DatabankConfig
from models.errors import DomainError

USER_AGENT = "roster-push/1"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # the first try and 5 retries
    base_s: float = 0.5  # waits 0.5, 1, 2, 4, 8 s (plus up to 20% jitter), at most max_s
    max_s: float = 30.0
    timeout_s: float = 30.0

    def delay(self, retry: int) -> float:
        return min(self.max_s, self.base_s * 2 ** retry) * (1 + random.random() * 0.2)


DEFAULT_RETRY = RetryPolicy()
# Worth another try: any 5xx (the receiver or a proxy in front of it failing, overloaded or restarting,
# including non-standard ones such as Cloudflare's 520-527) and these 4xx (timeout, too early,
# rate-limited). Any other 4xx is our request's fault and would fail the same way again.
RETRYABLE_4XX = frozenset({408, 425, 429})


def retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_4XX


def retry_after(value: str | None, max_s: float) -> float | None:
    """A numeric Retry-After (seconds), at most max_s; None when absent or not a number (an HTTP date)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, max_s)


class DatabankError(DomainError):
    """The batch was not accepted: the push fails with this reason (nothing is skipped silently)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


class DatabankClient:
    def __init__(self, config: DatabankConfig, secret: str, policy: RetryPolicy = DEFAULT_RETRY) -> None:
        self.config, self.secret, self.policy = config, secret, policy
        self.http = httpx.AsyncClient(timeout=policy.timeout_s, follow_redirects=False,
                                      headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"})

    async def __aenter__(self) -> DatabankClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def post(self, body: bytes, idempotency_key: str, label: str) -> int:
        """POST one batch until it is accepted (2xx); returns how many tries it took.

        DatabankError after a 4xx (not retried) or when the retries run out on 5xx/timeouts/connection errors.
        """
        reason = ""
        wait: float | None = None  # the receiver's Retry-After for the next try, if it gave one
        for attempt in range(self.policy.attempts):
            if attempt:
                await asyncio.sleep(self.policy.delay(attempt - 1) if wait is None else wait)
                wait = None
            timestamp = str(int(time.time()))
            headers = {"X-Roster-Key-Id": self.config.access_key_id, "X-Roster-Timestamp": timestamp,
                       "X-Roster-Signature": sign(self.secret, timestamp, body), "Idempotency-Key": idempotency_key}
            try:
                response = await self.http.post(self.config.endpoint, content=body, headers=headers)
            except httpx.TransportError as exc:  # timeouts, refused or reset connections
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if response.is_success:
                return attempt + 1
            reason = f"HTTP {response.status_code}: {response.text[:300]}"
            if not retryable(response.status_code):
                raise DatabankError("DATABANK_REJECTED", f"the Data Bank refused {label}: {reason}")
            wait = retry_after(response.headers.get("Retry-After"), self.policy.max_s)
        raise DatabankError("DATABANK_UNAVAILABLE",
                            f"the Data Bank did not accept {label} after {self.policy.attempts} tries: {reason}")
