"""The OpenAPI document is the contract: schemathesis runs every check against the app (issue 12).

The app's own /openapi.json is loaded and every operation is exercised in-process (ASGI) with
a real bearer token of a user of the test database, on the embedded executor (jobs really
run): the examples, coverage and fuzzing phases per operation, then a stateful run that
chains operations through the links schemathesis infers (submit, read, cancel, download).
Every built-in check is on, as with `--checks all`: no 5xx, every status and header
documented, every body matching its schema, schema-valid requests accepted, schema-invalid
ones refused, auth not ignored, unsupported methods answered 405. Bounded: a fixed seed
(derandomized), MAX_EXAMPLES fuzzed cases per operation, no example database, and a hard
timeout on each test. On SQLite and on PostgreSQL (whose text refuses NUL bytes), like the
`service` fixture: PostgreSQL skips where it is not reachable, except in CI.

Only the two event streams are excluded (`EVENT_STREAMS`): a stream stays open until its job
ends (`/reports/events` never ends by itself), so a fuzzed call has no response to validate
in bounded time; `tests/test_job_events.py` covers them over real HTTP, and their refusals
(401, 404, 422) are the same JSON as the job routes'. Every other submit's side effect is
bounded here (small row limits for reports, no SMTP server, so a mail job fails at once;
the fuzzing user's unfinished jobs are cancelled at the end). GET /metrics is not in the
document (Prometheus text for scrapers, not the API). Only one check is tuned,
for the operations whose acceptance depends on content no JSON Schema can state:
`positive_data_acceptance` also expects
- 415 and 422 from POST /documents and 422 from POST /datasets: the file's bytes (a real
  PDF/PNG/JPEG/TIFF, a CSV with a header row) are decided by sniffing, not by the schema;
- 422 from POST /reports/heavy: the columns named must exist in the chosen dataset;
- 422 from POST /reports/dummy and /reports/heavy: a `webhook_url` must resolve, and only to
  public addresses (`webhooks/target.py`);
- 422 from POST /notifications/*: who a user may mail (`notifications/policy.py`: a
  non-admin only their own address) and, in bulk, that at least one address is valid;
- 422 from POST and PATCH /schedules: a cron expression and a time zone must exist, and only
  one of `cron` and `interval_seconds` be given (`schedules/timing.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.pytest import from_fixture
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import DATABASES, Service, running_service

MAX_EXAMPLES = 10
STATEFUL_EXAMPLES = 10
STATEFUL_STEPS = 8
SEED = 12
FUZZ_EMAIL = "fuzz@example.com"
"""The fuzzing user's address: `"notify": "email"` needs one."""

CONTENT_DECIDES = [
    ("/documents", ["415", "422"]),
    ("/datasets", ["422"]),
    ("/reports/dummy", ["422"]),
    ("/reports/heavy", ["422"]),
    ("/notifications/email", ["422"]),
    ("/notifications/bulk", ["422"]),
    ("/schedules", ["422"]),
]
"""POST operations whose schema-valid requests may still be refused (module docstring)."""

ASGIApp = Callable[..., Any]


EVENT_STREAMS = r"^/reports/(jobs/\{job_id\}/)?events$"
"""Server-Sent Events streams: open until the job ends, or the client leaves (see above)."""


class WithoutLifespan:
    """The app for schemathesis' ASGI client, whose own lifespan would start a second
    executor and relay: the TestClient of `running_service` runs the app's lifespan."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("lifespan is run by the test's TestClient")  # = "unsupported"
        await self.app(scope, receive, send)


ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
"""schemathesis' default for `positive_data_acceptance` (5xx is `not_a_server_error`'s)."""


def _config(token: str) -> schemathesis.Config:
    operations = [
        {
            "include-method": "POST",
            "include-path": path,
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED + statuses}},
        }
        for path, statuses in CONTENT_DECIDES
    ]
    operations.append(
        {
            "include-method": "PATCH",
            "include-path": "/schedules/{schedule_id}",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
        }
    )
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            "auth": {"openapi": {"HTTPBearer": {"bearer": token}}},
            "checks": {"enabled": True},
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
            "operations": operations,
        }
    )


@pytest.fixture(scope="module", params=DATABASES)
def contract_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    with running_service(
        request.param,
        tmp_path_factory.mktemp(f"contract-{request.param}"),
        LOCAL_WORKERS=1,
        # A fuzzed report asks for up to 10M demo rows: refused (422) over these, so an
        # accepted one builds in a moment on the embedded worker.
        REPORT_MAX_ROWS=20_000,
        REPORT_MAX_EXCEL_ROWS=20_000,
        SMTP_HOST="",
    ) as service:
        yield service


@pytest.fixture(scope="module")
def fuzz_token(contract_service: Service) -> Iterator[str]:
    """The fuzzing user's token; afterwards their unfinished jobs are cancelled."""
    token = contract_service.token(email=FUZZ_EMAIL)
    yield token
    _cancel_unfinished(contract_service, contract_service.headers(token))


def _cancel_unfinished(service: Service, auth: dict[str, str]) -> None:
    """A fuzzed dummy job may sleep a minute: cancelled, it stops at its next progress call
    and no other is claimed, instead of holding the executor's shutdown for its 10 s join."""
    for status in ("started", "retrying", "queued", "pending"):
        page = service.client.get(f"/reports/jobs?status={status}&limit=200", headers=auth)
        for job in page.json()["items"]:
            service.client.post(f"/reports/jobs/{job['job_id']}/cancel", headers=auth)


@pytest.fixture(scope="module")
def api_schema(contract_service: Service, fuzz_token: str) -> OpenApiSchema:
    app = WithoutLifespan(contract_service.client.app)
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app, config=_config(fuzz_token))
    return loaded.exclude(path_regex=EVENT_STREAMS)  # type: ignore[return-value]


@pytest.fixture
def old_node_id(request: pytest.FixtureRequest) -> None:
    """schemathesis' `from_fixture` reads and sets `node._nodeid`, which pytest 9.2 no longer
    has; it only names each operation's subtest in reports, so an attribute to read will do."""
    request.node._nodeid = request.node.nodeid


schema = from_fixture("api_schema")


@pytest.mark.timeout(150)
@pytest.mark.usefixtures("old_node_id")
@schema.parametrize()
def test_every_operation_keeps_its_contract(case: schemathesis.Case) -> None:
    case.call_and_validate()


@pytest.mark.timeout(90)
def test_operation_chains_keep_the_contract(api_schema: OpenApiSchema) -> None:
    """Submit, then follow the ids it returns (read, cancel, download) with every check."""
    api_schema.as_state_machine().run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )


@pytest.mark.parametrize(
    "path",
    ["/reports/jobs/a%00b", "/datasets/a%00b", "/documents/a%00b", "/reports/jobs?job_type=a%00b"],
)
def test_a_nul_in_an_id_is_refused_before_sql(contract_service: Service, path: str) -> None:
    """PostgreSQL text cannot hold NUL: such an id used to reach SQL and answer 500."""
    auth = contract_service.headers(contract_service.token())
    response = contract_service.client.get(path, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["type"] == "string_pattern_mismatch"
