"""The API with its token check overridden (every request acts as `EVERYTHING`): only for
the bench's "with a token vs without" figures, run beside the real API in the same stack.
Never served by the product."""

from api.auth import authenticate
from api.main import create_app
from lakehouse.auth.grants import EVERYTHING

app = create_app()
app.dependency_overrides[authenticate] = lambda: EVERYTHING
