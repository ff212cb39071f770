import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "thor.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from market.ticks import start_embedded_market_stream  # noqa: E402
from thor.bodylimit import RequestBodyLimit  # noqa: E402
from thor.routing import websocket_application  # noqa: E402
from thor.scheduler import start_embedded_scheduler  # noqa: E402

# The body cap wraps Django itself: its ASGI handler stores the whole body before any check of its own.
application = ProtocolTypeRouter({"http": RequestBodyLimit(django_asgi_app), "websocket": websocket_application})
start_embedded_scheduler()
start_embedded_market_stream()
# What is alive once the application is loaded (Django, every model, view and consumer) is out of the
# collector's sight: a full collection otherwise scans all of it on the loop every socket shares.
gc.freeze()
