"""The API without its per-token limits and its metrics: only for the bench's figure of
what they cost, run beside the real API in the same stack. Never served by the product."""

from starlette.types import Scope

from api import metrics
from api.main import create_app
from api.quotas import Lease, admitted


def _not_counted(scope: Scope, status: int, seconds: float) -> None:
    pass


metrics.observe = _not_counted  # the request metrics: not counted
app = create_app()
app.dependency_overrides[admitted] = lambda: Lease(lambda: None)  # no limits, no round trip
