"""The product's Daphne (`python -m chatsite.serve`) as operators and clients see it: an
access log without secrets, and what a client sent over-long headers gets back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests import live

pytestmark = pytest.mark.django_db(transaction=True)

HEADER_LIMIT = 16 * 1024  # Twisted's, for the request line and the headers together


@pytest.fixture(scope="module")
def worker(
    django_db_setup: None, django_db_blocker: pytest.FixtureRequest
) -> Iterator[live.Worker]:
    """A Daphne of its own, writing its access log unbuffered so it can be read at once."""
    with django_db_blocker.unblock(), live.daphne_worker({"PYTHONUNBUFFERED": "1"}) as worker:
        yield worker


def wait_for_log(worker: live.Worker, *texts: str) -> str:
    """The worker's log once every text is in it (an access line follows its response)."""
    deadline = time.monotonic() + 10
    while True:
        log = worker.log()
        if all(text in log for text in texts) or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def test_secrets_in_query_strings_never_reach_the_access_log(worker: live.Worker) -> None:
    secret_key = "cs-" + "K" * 43
    requests = [
        ("/api/tags?key=" + secret_key, {}),
        ("/v1/models?api_key=sk-openaiSECRET123456&limit=5", {}),
        ("/accounts/login/?token=tokenSECRET&next=/keys/", {}),
        ("/api/version?access%5Ftoken=encodedSECRET", {"Authorization": f"Bearer {secret_key}"}),
        ("/health?q=" + secret_key, {}),
        ("/api/ps?password=pwSECRET;apikey=semicolonSECRET", {}),
    ]
    with httpx.Client(base_url=worker.url, timeout=10) as client:
        for target, headers in requests:
            client.get(target, headers=headers)
    log = wait_for_log(worker, "/api/ps?")
    access = [line for line in log.splitlines() if '"GET /' in line]
    assert len(access) >= len(requests), log[-3000:]
    for secret in ("KKKKKKKK", "openaiSECRET", "tokenSECRET", "encodedSECRET", "pwSECRET"):
        assert secret not in log
    assert "semicolonSECRET" not in log
    assert '"GET /api/tags?key=[redacted]" 401' in log
    assert '"GET /v1/models?api_key=[redacted]&limit=5" 401' in log
    assert '"GET /accounts/login/?token=[redacted]&next=/keys/" ' in log
    assert '"GET /health?q=cs-[redacted]" 200' in log


def test_headers_within_the_limit_are_served(worker: live.Worker) -> None:
    headers = {"X-Padding": "p" * (HEADER_LIMIT - 1024)}
    assert httpx.get(f"{worker.url}/health", headers=headers, timeout=10).status_code == 200


def test_headers_over_the_limit_in_total_get_a_bare_400(worker: live.Worker) -> None:
    # As the README says: Twisted answers 400 with no body and closes the connection.
    headers = {f"X-Padding-{i}": "p" * 1000 for i in range(20)}
    response = httpx.get(f"{worker.url}/health", headers=headers, timeout=10)
    assert response.status_code == 400
    assert response.content == b""


def test_one_header_line_over_the_limit_is_dropped_unanswered(worker: live.Worker) -> None:
    # As the README says: Twisted closes the connection without an answer.
    headers = {"X-Padding": "p" * (HEADER_LIMIT + 1024)}
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        httpx.get(f"{worker.url}/health", headers=headers, timeout=10)
