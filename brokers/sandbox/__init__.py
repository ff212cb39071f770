"""A local fake of the brokers' HTTP APIs (Kite Connect and its ticker's WebSocket at `/ws`, Schwab), for
development, tests and benchmarks.

The real broker clients (KiteConnect, KiteTicker, Schwab's) run unchanged against it. Nothing here imports Django, so it can run in a
thread inside a test or a benchmark; `manage.py run_broker_sandbox` runs it standalone.
"""

from .kite_models import DEMO_USERS, KiteApp
from .server import SandboxServer, SandboxState
from .state import Fault

__all__ = ["DEMO_USERS", "Fault", "KiteApp", "SandboxServer", "SandboxState"]
