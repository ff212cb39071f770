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
# A full collection still scans every open socket's objects, and holds every socket's ticks for as long (a
# process with hundreds of sockets pauses for a tenth of a second or more). Python's default runs one after
# every ten middle-generation passes once a quarter more long-lived objects have built up, which a stream of
# ticks reaches within a minute although what it promotes dies by reference count, not as cyclic garbage.
# A hundred times rarer keeps the pause out of all but a rare second; the cycles a closed socket leaves wait
# a little longer for it (the passes, and so the full collections, come faster where sockets come and go).
FULL_COLLECTION_EVERY = 1000  # middle-generation passes (Python's default: 10)
young, middle, _ = gc.get_threshold()
gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
