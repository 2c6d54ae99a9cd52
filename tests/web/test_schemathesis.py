"""schemathesis against the served OpenAPI schema: requests generated from every API
operation's schema, with a site admin's token of every scope and without one, never get
a 5xx answer."""

from __future__ import annotations

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.web.conftest import Web
from tests.web.test_api import token

EXAMPLES = 30


def test_no_operation_answers_with_a_server_error(web: Web) -> None:
    auth = token(web, "root", "read", "lists", "queue", "site", "export")
    schema = schemathesis.openapi.from_url(f"{web.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    failures: list[str] = []
    session = requests.Session()
    for op in operations:
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck),
                  phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
        @given(case=op.as_strategy())
        def check(case: schemathesis.Case) -> None:
            for headers in (auth, {}):
                response = case.call(base_url=web.url, session=session, headers=headers,
                                     timeout=60)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path}: "
                                    f"{response.status_code} {response.text[:200]}")

        check()
    session.close()
    assert failures == []
