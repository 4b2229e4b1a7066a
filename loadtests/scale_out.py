"""Scale-out figures on this machine: starts a real redis-server and PostgreSQL on loopback ports
(as the tests do, tests/services.py), runs `streamscribe bench-scale-out` against them, stops both.

    .venv/bin/python loadtests/scale_out.py [bench-scale-out options, e.g. --minutes 2 --jobs 8]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.services import postgres_server, redis_server

from streamscribe.cli.main import main

if __name__ == "__main__":
    scratch = Path(tempfile.mkdtemp(prefix="scale-out-"))
    with redis_server(scratch / "redis") as redis_url, postgres_server(scratch / "postgres") as database_url:
        sys.exit(
            main(["bench-scale-out", "--redis-url", redis_url, "--database-url", database_url, *sys.argv[1:]])
        )
