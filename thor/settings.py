"""Settings, all from the environment.

With nothing set, Thor runs embedded: SQLite, local-memory cache, in-memory channel
layer, eager Celery and a scheduler thread for the beat schedule. `DATABASE_URL`,
`REDIS_URL` and `CELERY_BROKER_URL` switch each part to the production-like stack.
"""

import ipaddress
import os
import re
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _env_or_fail(reader, name, **kwargs):
    """Read one variable; a malformed value stops start-up naming the variable."""
    try:
        return reader(name, **kwargs)
    except ImproperlyConfigured:
        raise
    except Exception as exc:
        raise ImproperlyConfigured(f"Environment variable {name} is malformed: {exc}") from None


def _env_bool(name, default):
    """A boolean that must say so: django-environ reads any unknown word (DEBUG=maybe) as False."""
    raw = env.str(name, default="").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"Environment variable {name} must be true or false, not {raw!r}.")


# A blank value (`THOR_ENV=` in .env or compose) means "not set", here and below.
THOR_ENV = env.str("THOR_ENV", default="") or "development"
if THOR_ENV not in {"development", "production"}:
    raise ImproperlyConfigured("Environment variable THOR_ENV must be 'development' or 'production'.")
PRODUCTION = THOR_ENV == "production"

DEBUG = _env_bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("Environment variable DEBUG must be false when THOR_ENV=production.")


def _required_in_production(name, development_default):
    value = env.str(name, default="")
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"Environment variable {name} is required when THOR_ENV=production.")
    return development_default


# Public (it is in this file): whoever has it can sign sessions and JWTs for a deployment that uses it.
DEVELOPMENT_SECRET_KEY = "thor-development-only-secret-key-not-for-production-use"
SECRET_KEY = _required_in_production("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
if PRODUCTION and SECRET_KEY == DEVELOPMENT_SECRET_KEY:
    raise ImproperlyConfigured(
        "Environment variable SECRET_KEY is the public development key; production needs its own."
    )
if PRODUCTION and len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("Environment variable SECRET_KEY must be at least 50 characters in production.")
ALLOWED_HOSTS = _env_or_fail(env.list, "ALLOWED_HOSTS", default=[]) or ([] if PRODUCTION else ["*"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("Environment variable ALLOWED_HOSTS is required when THOR_ENV=production.")

# Comma-separated Fernet keys, newest first. Development derives one from SECRET_KEY.
THOR_ENCRYPTION_KEYS = [key for key in _required_in_production("THOR_ENCRYPTION_KEYS", "").split(",") if key.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "channels",
    "thor",
    "identity",
    "brokers",
    "market",
    "accounts",
    "analytics",
]

# Django's middleware through thor.middleware's subclasses where it helps: the same hooks, run on the
# event loop under ASGI instead of two thread hops per middleware (see thor/middleware.py).
MIDDLEWARE = [
    # django-prometheus's pair: first and last, so its latencies cover the whole stack and the view.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "thor.middleware.CorrelationIdMiddleware",
    "thor.middleware.NoStoreApiMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The admin's CSS and JS, from STATIC_ROOT (collectstatic, run in the image build); no proxy needed for them.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # The session, Django's login and the messages serve the admin only: /api/ requests skip them.
    "thor.middleware.AdminSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "thor.middleware.AdminAuthenticationMiddleware",
    "thor.middleware.AdminMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "thor.urls"
WSGI_APPLICATION = "thor.wsgi.application"
ASGI_APPLICATION = "thor.asgi.application"
AUTH_USER_MODEL = "identity.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Storage: embedded SQLite unless DATABASE_URL is set -------------------------------
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": _env_or_fail(env.db_url, "DATABASE_URL")}
    if DATABASES["default"].get("ENGINE") not in {
        "django.db.backends.postgresql",
        "django.db.backends.sqlite3",
    }:
        raise ImproperlyConfigured("Environment variable DATABASE_URL must be a postgres:// or sqlite:// URL.")
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Under ASGI each request's sync code may run on a new thread, and persistent connections
        # are per thread: they pile up until PostgreSQL refuses more. A pool bounds them instead.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": _env_or_fail(env.int, "THOR_DB_POOL_SIZE", default=10),
            "timeout": 10,
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
EMBEDDED = not env.str("DATABASE_URL", default="")

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured("Environment variable REDIS_URL must be a redis:// or rediss:// URL.")
    # Under pytest-xdist each worker has its own test database (pytest-django suffixes its name with the worker
    # id) and its own Redis DB, so one worker's cache.clear() never empties another's cache nor its channel
    # layer: worker gwN uses the DB REDIS_URL names plus N. `make test` names DB 8 and runs three workers, so 8
    # to 10, never 7 (the browser suite) nor 13 (CI's Celery). Only the pytest process derives it: a server a
    # test starts inherits PYTEST_XDIST_WORKER but is handed the derived URL, and must not add N again.
    _xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if _xdist_worker and "pytest" in sys.modules:
        _parts = urlsplit(REDIS_URL)
        _worker_db = int(_parts.path.strip("/") or 0) + int(_xdist_worker.removeprefix("gw"))
        if _worker_db > 15 or _worker_db in (7, 13):
            raise ImproperlyConfigured(
                f"pytest-xdist worker {_xdist_worker} would use Redis DB {_worker_db} (REDIS_URL's DB plus the "
                "worker's number): name a lower DB or run fewer workers; 7 and 13 belong to other suites."
            )
        REDIS_URL = _parts._replace(path=f"/{_worker_db}").geturl()
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "thor",
            "OPTIONS": {
                # A Redis outage degrades to direct calls; it never fails a request on its own.
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # A consumer waits for messages with BZPOPMIN for 5 s (channels-redis's brpop_timeout), and
            # redis-py 8 reads with a 5 s socket timeout by default: on a busy machine Redis's empty answer
            # lands just after the client gave up, the TimeoutError kills the consumer and its socket drops
            # (bench/ws_fanout lost a socket in twenty that way). Reads wait longer than the block.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": "thor"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True

# --- Celery: eager with an in-process scheduler thread unless a broker is set ----------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
if CELERY_BROKER_URL and not CELERY_BROKER_URL.startswith(("redis://", "rediss://", "amqp://", "memory://")):
    raise ImproperlyConfigured("Environment variable CELERY_BROKER_URL must be a redis://, amqp:// or memory:// URL.")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "memory://"
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 100
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Keep the JSON log lines (with correlation ids) in workers: Celery would replace the root handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "expire-kite-sessions": {
        "task": "brokers.tasks.expire_kite_sessions",
        # Kite tokens die at 06:00 IST (00:30 UTC).
        "schedule": crontab(hour=0, minute=31),
    },
    "match-paper-orders": {
        "task": "accounts.tasks.match_paper_orders",
        "schedule": timedelta(seconds=5),
    },
    # Each exchange's square-off time is accounts.paper_closing.square_off_at (its own time zone, and MCX's moving
    # with the US clock): the task closes what is due and nothing else.
    "square-off-paper-positions": {
        "task": "accounts.tasks.square_off_paper_positions",
        "schedule": timedelta(minutes=1),
    },
    # Contracts expire at their exchange's close on the expiry day; positions in them are settled on the next pass.
    "settle-expired-paper-positions": {
        "task": "accounts.tasks.settle_expired_paper_positions",
        "schedule": timedelta(minutes=5),
    },
    "settle-unknown-orders": {
        "task": "accounts.tasks.settle_unknown_orders",
        "schedule": timedelta(seconds=2),
    },
    "refresh-broker-tokens": {
        "task": "brokers.tasks.refresh_due_broker_tokens",
        # Refreshes access tokens a few minutes before they expire (THOR_BROKER_REFRESH_LEAD_SECONDS).
        "schedule": timedelta(seconds=_env_or_fail(env.float, "THOR_BROKER_REFRESH_EVERY_SECONDS", default=60.0)),
    },
    "purge-revoked-sessions": {
        "task": "identity.tasks.purge_revoked_sessions",
        "schedule": crontab(minute=17),
    },
    "purge-refresh-rotations": {
        "task": "identity.tasks.purge_refresh_rotations",
        "schedule": timedelta(minutes=5),
    },
}
# The embedded scheduler thread runs only where the ASGI app is served in embedded mode.
THOR_EMBEDDED_SCHEDULER = EMBEDDED and _env_bool("THOR_EMBEDDED_SCHEDULER", default=True)
# The market stream (market.ticks) on a thread of the embedded server: `make run` has no separate process for it.
THOR_EMBEDDED_MARKET_STREAM = EMBEDDED and _env_bool("THOR_EMBEDDED_MARKET_STREAM", default=True)

# --- Auth -------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    # simplejwt's JWT authentication; a read (GET, HEAD, OPTIONS) takes its user from a short cache (below).
    "DEFAULT_AUTHENTICATION_CLASSES": ["identity.authentication.ReadCachedJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "thor.parsers.DepthLimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "thor.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Throttles key on the client address. X-Forwarded-For is trusted only through this many
    # proxies in front of Thor; 0 means REMOTE_ADDR, so a client cannot pick its own identity.
    "NUM_PROXIES": _env_or_fail(env.int, "THOR_TRUSTED_PROXIES", default=0),
}


def _proxy_addresses(name):
    """Addresses or networks (or *) whose X-Forwarded-For/-Proto uvicorn believes; blank: none."""
    values = [value.strip() for value in _env_or_fail(env.list, name, default=[]) if value.strip()]
    for value in values:
        if value == "*":
            continue
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"Environment variable {name} must list IP addresses or networks, not {value!r}."
            ) from None
    return values


# Where the client address comes from, decided once: `python -m thor.serve` gives this list to uvicorn's
# --forwarded-allow-ips (and turns proxy headers off when it is empty), so REMOTE_ADDR is the client as
# the trusted proxy saw it. Reading X-Forwarded-For again in DRF (THOR_TRUSTED_PROXIES) on top would
# believe the header from any peer that bypasses the proxy, so the two cannot be combined.
THOR_FORWARDED_ALLOW_IPS = _proxy_addresses("THOR_FORWARDED_ALLOW_IPS")
if THOR_FORWARDED_ALLOW_IPS and REST_FRAMEWORK["NUM_PROXIES"]:
    raise ImproperlyConfigured(
        "Environment variable THOR_TRUSTED_PROXIES must be 0 when THOR_FORWARDED_ALLOW_IPS is set: "
        "uvicorn already takes the client address from the trusted proxies' X-Forwarded-For."
    )

# Seconds a stopping server waits for open requests and sockets before closing them (thor.serve passes it to
# uvicorn's --timeout-graceful-shutdown and granian's --workers-kill-timeout). Unbounded, uvicorn once waited
# minutes on WebSocket tasks after SIGTERM; below Docker's 10 s, a stop never ends in SIGKILL mid-response.
THOR_SHUTDOWN_SECONDS = _env_or_fail(env.int, "THOR_SHUTDOWN_SECONDS", default=8)
if THOR_SHUTDOWN_SECONDS < 1:
    raise ImproperlyConfigured("Environment variable THOR_SHUTDOWN_SECONDS must be at least 1.")
# /metrics answers a request carrying `Authorization: Bearer <this>`; blank, only requests from this machine
# (127.0.0.1, ::1: a scraper beside the server). Behind the proxy it is refused from outside either way.
THOR_METRICS_TOKEN = env.str("THOR_METRICS_TOKEN", default="")


def _env_rate(name, default):
    """A DRF throttle rate such as 20/min; a typo would otherwise only fail at request time, as a 500."""
    value = env.str(name, default=default)
    if not re.fullmatch(r"[0-9]+/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ImproperlyConfigured(f"Environment variable {name} must be a rate such as 20/min, not {value!r}.")
    return value


THOR_THROTTLE_RATES = {
    "login": _env_rate("THOR_LOGIN_RATE", "20/min"),
    # The admin's login form, per IP at the API login's rate, in a bucket of its own.
    "admin_login": _env_rate("THOR_LOGIN_RATE", "20/min"),
    "oauth_start": _env_rate("THOR_OAUTH_START_RATE", "30/min"),
    "orders": _env_rate("THOR_ORDER_RATE", "120/min"),
    # Refreshes per refresh token and per user, not per IP: an office behind one NAT address refreshes as
    # many sessions as it has. A refresh token that does not verify counts against the login's per-IP rate.
    "refresh_token": _env_rate("THOR_REFRESH_TOKEN_RATE", "20/min"),
    "refresh_user": _env_rate("THOR_REFRESH_USER_RATE", "60/min"),
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=_env_or_fail(env.int, "THOR_ACCESS_TOKEN_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=7),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "SIGNING_KEY": SECRET_KEY,
}

# A refresh token presented again within this many seconds of its rotation answers the same new pair (an SPA
# sends a refresh from each request that got a 401); after it, reuse ends every token of that sign-in (RFC
# 9700 section 4.14; identity.refresh).
THOR_REFRESH_REUSE_GRACE_SECONDS = _env_or_fail(env.int, "THOR_REFRESH_REUSE_GRACE_SECONDS", default=30)
if not 0 <= THOR_REFRESH_REUSE_GRACE_SECONDS <= 300:
    raise ImproperlyConfigured(
        "Environment variable THOR_REFRESH_REUSE_GRACE_SECONDS must be between 0 and 300: a used refresh token "
        "must not stay usable for long."
    )

# How long a read may use the user (and, for the live reads, the account) resolved by an earlier request,
# so that a read answered from the snapshot cache runs no SQL. It is the bound on revocation: a user
# disabled, an account or connection changed by a bulk update, is seen by every read within it (saves and
# logouts drop the cached copy at once). Writes always read the database. 0 turns the cache off.
THOR_READ_CACHE_SECONDS = _env_or_fail(env.float, "THOR_READ_CACHE_SECONDS", default=5.0)
if not 0 <= THOR_READ_CACHE_SECONDS <= 5:
    raise ImproperlyConfigured(
        "Environment variable THOR_READ_CACHE_SECONDS must be between 0 and 5: a disabled user must be refused "
        "within 5 seconds."
    )

# How long the rendered first page of an account's orders is kept (accounts.order_pages). A page is sent only
# while no order of the account has changed since it was built; this bounds only what a change that could
# not reach the cache (Redis briefly gone) leaves behind. 0 turns it off.
THOR_ORDER_PAGE_SECONDS = _env_or_fail(env.int, "THOR_ORDER_PAGE_SECONDS", default=30)

SPECTACULAR_SETTINGS = {
    "TITLE": "Thor API",
    "DESCRIPTION": "Multi-tenant brokerage portal: identity, broker connections, unified accounts.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "PREPROCESSING_HOOKS": ["thor.routes.document_slashed_paths_only"],
}

# --- CORS: env origins plus every tenant's allowed origins (see identity.signals) -------
CORS_ALLOWED_ORIGINS = _env_or_fail(env.list, "CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CORS_ALLOW_HEADERS = [
    "content-type",
    "authorization",
    "x-account-id",
    "x-correlation-id",
    "idempotency-key",
    "x-requested-with",
    "accept",
]
CORS_EXPOSE_HEADERS = ["x-correlation-id"]
# Every answer to an allowed origin carries CORS headers, a 404 outside /api/ too (an SPA with a wrong base URL
# then reads a 404, not "Failed to fetch"), except the admin's and /metrics: never readable from another origin.
CORS_URLS_REGEX = r"^(?!/admin(?:/|$)|/metrics(?:/|$))"
CORS_ALLOW_CREDENTIALS = True

# --- HTTP hardening -----------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = PRODUCTION and _env_bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = 31536000 if PRODUCTION else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Input limits. Bodies over THOR_MAX_REQUEST_BYTES are refused by thor.bodylimit before Django reads them;
# Django's own limit is the same number, for anything that reaches it another way (WSGI, tests).
THOR_MAX_REQUEST_BYTES = _env_or_fail(env.int, "THOR_MAX_REQUEST_BYTES", default=1024 * 1024)
if THOR_MAX_REQUEST_BYTES < 1:
    raise ImproperlyConfigured("Environment variable THOR_MAX_REQUEST_BYTES must be a positive number of bytes.")
DATA_UPLOAD_MAX_MEMORY_SIZE = THOR_MAX_REQUEST_BYTES
# JSON bodies nested deeper than this are a 400 (thor.parsers): Python's parser recurses.
THOR_MAX_JSON_DEPTH = _env_or_fail(env.int, "THOR_MAX_JSON_DEPTH", default=32)
SILENCED_SYSTEM_CHECKS = (
    [
        # /api/ paths answer with and without a trailing slash through explicit routes.
        "security.W008",
    ]
    if not PRODUCTION
    else []
)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("THOR_STATIC_ROOT", default="") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Production serves hashed, compressed copies that browsers may cache for good; they exist only after
    # collectstatic, so development keeps the plain storage (and WhiteNoise serves from the apps under DEBUG).
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Development (make run, the tests) serves the apps' static files directly, looked up per request.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = not PRODUCTION

# --- Logging: JSON lines, each with the request's correlation id -----------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "correlation": {"()": "thor.logging.CorrelationIdFilter"},
        "occasional": {"()": "thor.logging.OccasionalFilter"},
    },
    "formatters": {
        "json": {
            "()": "thor.logging.RedactingJsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["correlation"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # The web servers' own lines (uvicorn's WebSocket handshakes name the path with its query, its trace
        # lines the scope) go through the same handler, so through the same redaction as Thor's. No level here:
        # `--log-level` decides it. Not "uvicorn" itself: configuring it would reset its children, uvicorn.access
        # included, to propagate at INFO (an access log after all); thor.serve keeps the access loggers off.
        **{
            name: {"handlers": ["console"], "propagate": False}
            for name in ("uvicorn.error", "uvicorn.asgi", "_granian")
        },
        "django.server": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
        # With Redis down django-redis logs every cache call it skips, with a traceback: one line a minute says it.
        "django_redis.cache": {"filters": ["occasional"]},
        # Embedded, the beat schedule's tasks run in this process every few seconds: one line each would
        # drown the log. A Celery worker keeps its per-task lines.
        **({"celery.app.trace": {"level": "WARNING"}} if EMBEDDED else {}),
    },
}

# --- Thor ---------------------------------------------------------------------------------
THOR_PUBLIC_URL = env.str("THOR_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
THOR_OAUTH_STATE_MAX_AGE = 600

# Kite: where the official client and the login page live. Development points at the sandbox.
THOR_KITE_API_ROOT = env.str(
    "THOR_KITE_API_ROOT", default="https://api.kite.trade" if PRODUCTION else "http://127.0.0.1:8100"
)
THOR_KITE_LOGIN_URL = env.str(
    "THOR_KITE_LOGIN_URL",
    default="https://kite.zerodha.com/connect/login" if PRODUCTION else "http://127.0.0.1:8100/connect/login",
)
# Connections linked through the sandbox may trade from the start (DESIGN.md section 2); connections to the
# real Kite stay off until a tenant turns them on (static-IP rule).
THOR_KITE_IS_SANDBOX = not PRODUCTION and THOR_KITE_API_ROOT != "https://api.kite.trade"
# Kite's streaming quotes (KiteTicker's root); empty: the sandbox's /ws beside THOR_KITE_API_ROOT in development,
# wss://ws.kite.trade otherwise (market.ticks.ticker_root).
THOR_KITE_TICKER_ROOT = env.str("THOR_KITE_TICKER_ROOT", default="")
THOR_SANDBOX_KITE_API_KEY = env.str("THOR_SANDBOX_KITE_API_KEY", default="thor_demo_key")
THOR_SANDBOX_KITE_API_SECRET = env.str("THOR_SANDBOX_KITE_API_SECRET", default="thor_demo_secret")
THOR_SANDBOX_KITE_REDIRECT_URL = f"{THOR_PUBLIC_URL}/api/auth/broker/callback"
THOR_SANDBOX_KITE_POSTBACK_URL = f"{THOR_PUBLIC_URL}/api/brokers/kite/postback/"
# Kite client: seconds before a call is a timeout, and how long a call may wait for its rate budget.
THOR_KITE_TIMEOUT = _env_or_fail(env.float, "THOR_KITE_TIMEOUT", default=7.0)
THOR_KITE_RATE_WAIT = _env_or_fail(env.float, "THOR_KITE_RATE_WAIT", default=1.5)
# Live Kite orders leave from the user's registered static IP, through an order egress (brokers.egress).
# Where a user refused for want of one is sent to read what to set up.
THOR_ORDER_EGRESS_HELP_URL = env.str(
    "THOR_ORDER_EGRESS_HELP_URL",
    default="https://support.zerodha.com/category/trading-and-markets/general-kite/kite-api/articles/static-ip",
)
THOR_ORDER_EGRESS_PROBE_TIMEOUT = _env_or_fail(env.float, "THOR_ORDER_EGRESS_PROBE_TIMEOUT", default=5.0)
# Egress hosts allowed although loopback or private (a proxy beside Thor in development); any other such
# host is refused, so an egress cannot point Thor's order traffic or probes into its own network.
THOR_ORDER_EGRESS_PRIVATE_HOSTS = _env_or_fail(env.list, "THOR_ORDER_EGRESS_PRIVATE_HOSTS", default=[])
# A placement that failed in transit is confirmed by reading the order book (never by sending again):
# this many looks, this many seconds apart, before the answer says UNKNOWN (202) and the settle task
# takes over, looking again with backoff.
THOR_PLACEMENT_LOOKUPS = _env_or_fail(env.int, "THOR_PLACEMENT_LOOKUPS", default=2)
THOR_PLACEMENT_LOOKUP_INTERVAL = _env_or_fail(env.float, "THOR_PLACEMENT_LOOKUP_INTERVAL", default=1.0)
# How long after it was sent an UNKNOWN order may still appear in each broker's order book; after that,
# with the book read and no trace of it, it was never placed. Kite: its gateway gives up on a request
# within a minute, and the day's order book lists every order of the day, so ten minutes is ample.
# Schwab: the account's recent orders are read back (no client order id), within the same ten minutes.
THOR_PLACEMENT_SETTLE_SECONDS = {
    "kite": _env_or_fail(env.int, "THOR_KITE_PLACEMENT_SETTLE_SECONDS", default=600),
    "schwab": _env_or_fail(env.int, "THOR_SCHWAB_PLACEMENT_SETTLE_SECONDS", default=600),
}
# How long after a send that got no answer each broker may still enter the order (a request held in its
# gateway): a broker order entered later than that is no placement of that send (accounts.placement_matching).
THOR_PLACEMENT_LATE_LANDING_SECONDS = {
    "kite": _env_or_fail(env.int, "THOR_KITE_PLACEMENT_LATE_LANDING_SECONDS", default=60),
    "schwab": _env_or_fail(env.int, "THOR_SCHWAB_PLACEMENT_LATE_LANDING_SECONDS", default=60),
}
# A PENDING order whose send started longer ago than this has no process sending it any more (every
# broker call times out well before): the reconciler settles it as a placement whose answer was lost.
THOR_PLACEMENT_ORPHAN_SECONDS = _env_or_fail(env.int, "THOR_PLACEMENT_ORPHAN_SECONDS", default=60)

# --- Schwab (DESIGN.md section 3, seed 002) ----------------------------------------------
# Trader API and OAuth bases; development points both at the broker sandbox (port 8100).
THOR_SCHWAB_API_BASE = env.str(
    "THOR_SCHWAB_API_BASE", default="https://api.schwabapi.com" if PRODUCTION else "http://127.0.0.1:8100"
).rstrip("/")
THOR_SCHWAB_AUTH_BASE = env.str(
    "THOR_SCHWAB_AUTH_BASE", default="https://api.schwabapi.com" if PRODUCTION else "http://127.0.0.1:8100"
).rstrip("/")
THOR_SCHWAB_SCOPE = env.str("THOR_SCHWAB_SCOPE", default="api")
THOR_SCHWAB_TIMEOUT = _env_or_fail(env.float, "THOR_SCHWAB_TIMEOUT", default=10.0)
# TD Ameritrade's "<client id>@AMER.OAUTHAP" (seed 002): only for apps still registered that way.
THOR_SCHWAB_LEGACY_CLIENT_ID_SUFFIX = _env_bool("THOR_SCHWAB_LEGACY_CLIENT_ID_SUFFIX", default=False)
# Per-app budgets from Schwab's developer portal: requests a minute, order calls a minute (set per app in the
# portal, 120 by default) and order calls a day; how long a call may wait for its budget.
THOR_SCHWAB_REQUESTS_PER_MINUTE = _env_or_fail(env.int, "THOR_SCHWAB_REQUESTS_PER_MINUTE", default=120)
THOR_SCHWAB_ORDERS_PER_MINUTE = _env_or_fail(env.int, "THOR_SCHWAB_ORDERS_PER_MINUTE", default=120)
THOR_SCHWAB_ORDERS_PER_DAY = _env_or_fail(env.int, "THOR_SCHWAB_ORDERS_PER_DAY", default=4000)
# The OAuth token endpoint's own per-app budget (Schwab documents none; refreshes for many users share it).
THOR_SCHWAB_TOKEN_REQUESTS_PER_MINUTE = _env_or_fail(env.int, "THOR_SCHWAB_TOKEN_REQUESTS_PER_MINUTE", default=600)
# Instrument searches (market.instrument_search: a US symbol the master does not list) take their own share of
# the requests above, so a run of unknown symbols never spends what orders and polls need.
THOR_SCHWAB_INSTRUMENT_SEARCHES_PER_MINUTE = _env_or_fail(
    env.int, "THOR_SCHWAB_INSTRUMENT_SEARCHES_PER_MINUTE", default=30
)
# Quote calls (market.quotes: every US price paper trading reads) take their own share of the requests above:
# at most this many in any minute, and a US quote stays live 60/this seconds; the poll's half and this quarter
# leave the rest for orders, linking and lookups.
THOR_SCHWAB_QUOTES_PER_MINUTE = _env_or_fail(env.int, "THOR_SCHWAB_QUOTES_PER_MINUTE", default=30)
if THOR_SCHWAB_QUOTES_PER_MINUTE <= 0:
    raise ImproperlyConfigured("Environment variable THOR_SCHWAB_QUOTES_PER_MINUTE must be more than 0.")
# How long a US symbol Schwab does not list (or lists as nothing Thor trades) is refused without asking again.
THOR_MARKET_UNKNOWN_SYMBOL_SECONDS = _env_or_fail(env.int, "THOR_MARKET_UNKNOWN_SYMBOL_SECONDS", default=300)
THOR_SCHWAB_RATE_WAIT = _env_or_fail(env.float, "THOR_SCHWAB_RATE_WAIT", default=1.0)
# Reads (never order calls) are retried this many times on a 5xx or a network error, with jittered backoff.
THOR_SCHWAB_READ_RETRIES = _env_or_fail(env.int, "THOR_SCHWAB_READ_RETRIES", default=2)
THOR_SCHWAB_RETRY_BACKOFF = _env_or_fail(env.float, "THOR_SCHWAB_RETRY_BACKOFF", default=0.25)
# Schwab sends no order postbacks: a beat task reads the order books of the Schwab accounts an order socket
# follows (accounts.polling) every THOR_SCHWAB_POLL_SECONDS, spending at most THOR_SCHWAB_POLL_SHARE of each
# app's THOR_SCHWAB_REQUESTS_PER_MINUTE (with more followed accounts than that, they take turns).
THOR_SCHWAB_POLL_SECONDS = _env_or_fail(env.float, "THOR_SCHWAB_POLL_SECONDS", default=5.0)
THOR_SCHWAB_POLL_SHARE = _env_or_fail(env.float, "THOR_SCHWAB_POLL_SHARE", default=0.5)
if THOR_SCHWAB_POLL_SECONDS <= 0:
    raise ImproperlyConfigured("Environment variable THOR_SCHWAB_POLL_SECONDS must be more than 0.")
if not 0 < THOR_SCHWAB_POLL_SHARE <= 1:
    raise ImproperlyConfigured("Environment variable THOR_SCHWAB_POLL_SHARE must be more than 0 and at most 1.")
CELERY_BEAT_SCHEDULE |= {
    "poll-schwab-orders": {
        "task": "accounts.tasks.poll_schwab_orders",
        "schedule": timedelta(seconds=THOR_SCHWAB_POLL_SECONDS),
    },
}

# --- The order audit trail (accounts.audit_chain, accounts.audit_retention) -------------
# Days an OrderEvent is kept at the least (brokers keep order audit trails five years); only `manage.py
# purge_audit`, run by an operator, removes older ones.
THOR_AUDIT_RETENTION_DAYS = _env_or_fail(env.int, "THOR_AUDIT_RETENTION_DAYS", default=1827)
if THOR_AUDIT_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("Environment variable THOR_AUDIT_RETENTION_DAYS must be at least 1.")
# Seconds between runs of the sealer that hash-chains new audit rows (after they commit, off the placement path).
THOR_AUDIT_SEAL_SECONDS = _env_or_fail(env.float, "THOR_AUDIT_SEAL_SECONDS", default=5.0)
if THOR_AUDIT_SEAL_SECONDS <= 0:
    raise ImproperlyConfigured("Environment variable THOR_AUDIT_SEAL_SECONDS must be more than 0.")
CELERY_BEAT_SCHEDULE |= {
    "seal-audit-chains": {
        "task": "accounts.tasks.seal_audit_chains",
        "schedule": timedelta(seconds=THOR_AUDIT_SEAL_SECONDS),
    },
}
# The sandbox's demo Schwab app, and the SPA page seed 002 relays the code from.
THOR_SANDBOX_SCHWAB_CLIENT_ID = env.str("THOR_SANDBOX_SCHWAB_CLIENT_ID", default="thor_demo_schwab_client")
THOR_SANDBOX_SCHWAB_CLIENT_SECRET = env.str("THOR_SANDBOX_SCHWAB_CLIENT_SECRET", default="thor_demo_schwab_secret")
THOR_SANDBOX_SCHWAB_REDIRECT_URL = env.str(
    "THOR_SANDBOX_SCHWAB_REDIRECT_URL", default="http://localhost:5173/schwab/callback"
)

# --- Social login (DESIGN.md section 5) ----------------------------------------------------
# Development points every provider at the broker sandbox (`make run` starts it on port 8100), whose Google-
# and Discord-like providers know the demo clients below; production needs real client ids and secrets,
# per tenant in the admin or here as the default for tenants without their own app. A blank value is unset.
THOR_SANDBOX_URL = (env.str("THOR_SANDBOX_URL", default="") or "http://127.0.0.1:8100").rstrip("/")
THOR_GOOGLE_DISCOVERY_URL = env.str("THOR_GOOGLE_DISCOVERY_URL", default="") or (
    "https://accounts.google.com/.well-known/openid-configuration"
    if PRODUCTION
    else f"{THOR_SANDBOX_URL}/google/.well-known/openid-configuration"
)
THOR_DISCORD_API_BASE = (
    env.str("THOR_DISCORD_API_BASE", default="")
    or ("https://discord.com" if PRODUCTION else f"{THOR_SANDBOX_URL}/discord")
).rstrip("/")


def _social_default_app(provider: str) -> dict:
    prefix = f"THOR_{provider.upper()}"
    return {
        "client_id": env.str(f"{prefix}_CLIENT_ID", default="") or ("" if PRODUCTION else f"thor-demo-{provider}"),
        "client_secret": env.str(f"{prefix}_CLIENT_SECRET", default="")
        or ("" if PRODUCTION else f"thor-demo-{provider}-secret"),
    }


THOR_SOCIAL_DEFAULT_APPS = {provider: _social_default_app(provider) for provider in ("google", "discord")}
# Seconds a provider call (discovery, token, JWKS, user info) may take before the login fails with a timeout.
THOR_SOCIAL_HTTP_TIMEOUT = _env_or_fail(env.float, "THOR_SOCIAL_HTTP_TIMEOUT", default=5.0)
# A login started must finish within this many seconds (state and browser cookie); the one-time code of
# `code` delivery is traded within THOR_SOCIAL_CODE_SECONDS.
THOR_SOCIAL_LOGIN_MAX_AGE = 600
THOR_SOCIAL_CODE_SECONDS = 60
# Seconds a provider's discovery document and JWKS are reused (a JWKS is read again for an unknown key id).
THOR_SOCIAL_METADATA_SECONDS = 3600

# --- Broker token lifecycle (refresh tokens: Schwab) -----------------------------------------
# A call refreshes an access token that expires within the margin; the beat task refreshes those that expire
# within the lead, every THOR_BROKER_REFRESH_EVERY_SECONDS, fanned out to workers in batches, each app's
# share capped by its token endpoint budget (THOR_SCHWAB_TOKEN_REQUESTS_PER_MINUTE).
THOR_BROKER_REFRESH_MARGIN_SECONDS = _env_or_fail(env.float, "THOR_BROKER_REFRESH_MARGIN_SECONDS", default=60.0)
THOR_BROKER_REFRESH_LEAD_SECONDS = _env_or_fail(env.float, "THOR_BROKER_REFRESH_LEAD_SECONDS", default=300.0)
THOR_BROKER_REFRESH_EVERY_SECONDS = _env_or_fail(env.float, "THOR_BROKER_REFRESH_EVERY_SECONDS", default=60.0)
THOR_BROKER_REFRESH_BATCH_SIZE = _env_or_fail(env.int, "THOR_BROKER_REFRESH_BATCH_SIZE", default=50)
# A connection shows `expiring` (and its reauth_due_at) this long before its refresh token ends.
THOR_BROKER_REAUTH_WARNING_SECONDS = _env_or_fail(env.float, "THOR_BROKER_REAUTH_WARNING_SECONDS", default=86400.0)
# Seed 002: Schwab account number -> hashValue map, cached this long.
THOR_SCHWAB_ACCOUNT_MAP_SECONDS = 60

# --- Accounts: live read freshness and the paper engine -------------------------------------
THOR_LIVE_FRESH_SECONDS = _env_or_fail(env.float, "THOR_LIVE_FRESH_SECONDS", default=5.0)
THOR_LIVE_STALE_SECONDS = _env_or_fail(env.float, "THOR_LIVE_STALE_SECONDS", default=300.0)
# Paper fills: "kite" (the market's quote service through the tenant's market-data connection: Kite in
# production, the sandbox's Kite in development, which `seed_demo` links) or "fixed" (THOR_PAPER_FIXED_PRICES;
# the test suite uses it).
THOR_PAPER_PRICE_SOURCE = env.str("THOR_PAPER_PRICE_SOURCE", default="kite")
if THOR_PAPER_PRICE_SOURCE not in {"kite", "fixed"}:
    raise ImproperlyConfigured("Environment variable THOR_PAPER_PRICE_SOURCE must be 'kite' or 'fixed'.")
THOR_PAPER_FIXED_PRICES = {
    "NSE:INFY": "1500.00",
    "NSE:SBIN": "800.00",
    "NSE:RELIANCE": "2900.00",
    "NSE:TCS": "3900.00",
    "NSE:HDFCBANK": "1650.00",
    "NSE:ITC": "430.00",
    "NASDAQ:AAPL": "230.00",
    "NASDAQ:MSFT": "420.00",
    "NYSE:SPY": "560.00",
}
# The share of a paper short's value held as margin, for products a tenant's paper_margin_rates does not list.
THOR_PAPER_DEFAULT_MARGIN_RATE = _env_or_fail(
    lambda name: Decimal(env.str(name, default="0.25")), "THOR_PAPER_DEFAULT_MARGIN_RATE"
)
# A paper market order's slippage where its quote has no depth (with depth it fills at the book's levels).
THOR_PAPER_SLIPPAGE_BPS = _env_or_fail(env.int, "THOR_PAPER_SLIPPAGE_BPS", default=5)
# What paper fills are charged beyond their price (accounts.charges: Zerodha-like for INR, SEC and FINRA fees
# for USD), debited from cash. "tenants" overrides any rate per tenant slug and currency, e.g.
# {"acme": {"INR": {"options": {"brokerage_flat": "10"}}, "USD": None}} (None: that currency is free).
THOR_PAPER_CHARGES = {
    "enabled": _env_bool("THOR_PAPER_CHARGES_ENABLED", default=True),
    "tenants": {},
}

# Price protection (issue 22): a live LIMIT/SL order on an Indian exchange priced outside its band is refused
# before it is sent. Options: a premium above `option_premium_threshold` may be `option_percent` % either side
# of the last price, one at or below it `option_absolute` either side. Anything else: the quote's circuit limits,
# else `default_percent` % either side of the last price. "tenants" overrides any of these per tenant slug,
# e.g. {"acme": {"option_percent": "60"}}: a deployment setting, so no migration and no API to guard.
THOR_PRICE_BANDS = {
    "default": {
        "option_premium_threshold": "50",
        "option_percent": "40",
        "option_absolute": "20",
        "default_percent": "20",
    },
    "tenants": {},
}
# How old (by its as_of) a quote from the tenant's quote service may be to set a band: one this young serves the
# next order on the instrument without a call (Kite: one quote a second per app, shared by every user of it);
# with only an older one (the last good quote through a failure) the order goes on unchecked.
THOR_PRICE_BAND_QUOTE_SECONDS = 2
# A banded order served a kept quote past its feed's fresh period has it asked for again off the request
# (market.quote_refresh), so the next order on the instrument finds one young enough: at most this many names
# wait for that in a process (the rest are asked inline by their next order, as without it).
THOR_QUOTE_REFRESH_PENDING = 200

# --- Analytics: instruments, option-chain snapshots, F&O endpoints ---------------------------
# Underlyings whose chains are snapshotted (Kite `name` of their NFO contracts).
THOR_ANALYTICS_UNDERLYINGS = [
    name.strip().upper()
    for name in env.str("THOR_ANALYTICS_UNDERLYINGS", default="NIFTY,BANKNIFTY").split(",")
    if name.strip()
]
# Whose market-data connection snapshots quote through (market.quotes): this tenant's, else the most recently
# synced active session on any tenant's shared Kite app.
THOR_ANALYTICS_TENANT = env.str("THOR_ANALYTICS_TENANT", default="")
# Seconds between snapshots (the beat period); reads are cached this long.
THOR_ANALYTICS_SNAPSHOT_SECONDS = _env_or_fail(env.int, "THOR_ANALYTICS_SNAPSHOT_SECONDS", default=60)
# How much of each chain a snapshot takes: the nearest expiries, and strikes each side of the ATM strike.
THOR_ANALYTICS_EXPIRIES = _env_or_fail(env.int, "THOR_ANALYTICS_EXPIRIES", default=4)
THOR_ANALYTICS_STRIKES_AROUND_ATM = _env_or_fail(env.int, "THOR_ANALYTICS_STRIKES_AROUND_ATM", default=20)
# Days of snapshots kept; the daily retention task deletes older ones.
THOR_ANALYTICS_RETENTION_DAYS = _env_or_fail(env.int, "THOR_ANALYTICS_RETENTION_DAYS", default=365)
# The annual risk-free rate the Black-76 IV and Greeks discount at.
THOR_ANALYTICS_RISK_FREE_RATE = _env_or_fail(env.float, "THOR_ANALYTICS_RISK_FREE_RATE", default=0.065)
# Futures position signals: a move smaller than these (percent, per interval) is "neutral".
THOR_ANALYTICS_SIGNAL_PRICE_PCT = _env_or_fail(env.float, "THOR_ANALYTICS_SIGNAL_PRICE_PCT", default=0.05)
THOR_ANALYTICS_SIGNAL_OI_PCT = _env_or_fail(env.float, "THOR_ANALYTICS_SIGNAL_OI_PCT", default=0.5)
# SQLite (the embedded mode) ignores the covering columns of the chain quotes' series index, which only
# PostgreSQL needs for a year of snapshots: nothing to warn about there.
if "sqlite" in DATABASES["default"]["ENGINE"]:
    SILENCED_SYSTEM_CHECKS = [*SILENCED_SYSTEM_CHECKS, "models.W040"]
CELERY_BEAT_SCHEDULE |= {
    "load-instruments": {
        "task": "market.tasks.load_instruments",
        # Kite publishes the day's dump around 08:30 IST (03:00 UTC).
        "schedule": crontab(hour=3, minute=5),
    },
    "snapshot-option-chains": {
        "task": "analytics.tasks.snapshot_chains",
        "schedule": timedelta(seconds=THOR_ANALYTICS_SNAPSHOT_SECONDS),
    },
    "prune-chain-snapshots": {
        "task": "analytics.tasks.prune_snapshots",
        "schedule": crontab(hour=20, minute=30),
    },
}

# --- Order WebSocket: tickets, connection cap, resync --------------------------------------
# A ticket (POST /api/ws/ticket) opens one socket, once, within this many seconds.
THOR_WS_TICKET_SECONDS = _env_or_fail(env.int, "THOR_WS_TICKET_SECONDS", default=30)
# Open sockets per user; the one over the cap is refused with close code 4409.
THOR_WS_MAX_CONNECTIONS_PER_USER = _env_or_fail(env.int, "THOR_WS_MAX_CONNECTIONS_PER_USER", default=10)
# Order changes one resync answers; a client further behind is told to reload over REST.
THOR_WS_RESYNC_MAX_EVENTS = _env_or_fail(env.int, "THOR_WS_RESYNC_MAX_EVENTS", default=500)
# A socket marks the accounts it follows for this many seconds; its server process renews the marks of all
# its sockets every third of it (accounts.renewal, with the session checks and the market stream's lease);
# work for watched accounts only (the Schwab order poll) goes on this long after the last socket closed.
THOR_WS_FOLLOW_SECONDS = _env_or_fail(env.int, "THOR_WS_FOLLOW_SECONDS", default=90)
if THOR_WS_FOLLOW_SECONDS < 1:
    raise ImproperlyConfigured("Environment variable THOR_WS_FOLLOW_SECONDS must be at least 1.")
# Real-time P&L (accounts.ticks): at most this many price updates a second per socket and account, the latest
# price winning; and at most this many instruments a socket may `watch` beside what its accounts hold.
THOR_WS_PRICE_UPDATES_PER_SECOND = _env_or_fail(env.float, "THOR_WS_PRICE_UPDATES_PER_SECOND", default=4.0)
if not THOR_WS_PRICE_UPDATES_PER_SECOND > 0:
    raise ImproperlyConfigured("Environment variable THOR_WS_PRICE_UPDATES_PER_SECOND must be above 0.")
THOR_WS_MAX_WATCHED = _env_or_fail(env.int, "THOR_WS_MAX_WATCHED", default=50)
# WebSocket per-message deflate (RFC 7692) under `python -m thor.serve`. Off: the messages are small JSON
# (a few hundred bytes to a few KB, a few a second a socket), while each compressed socket keeps its own zlib
# contexts (hundreds of KB with context takeover) and deflates every message again for itself, which on a
# fan-out to many sockets costs more CPU and memory than the bandwidth it saves. On for links where bytes cost.
THOR_WS_COMPRESSION = _env_or_fail(env.bool, "THOR_WS_COMPRESSION", default=False)
# The market stream streams a watched instrument this long after the last renewal (each server process renews
# its sockets' every third of THOR_WS_FOLLOW_SECONDS).
THOR_MARKET_WATCH_SECONDS = _env_or_fail(env.float, "THOR_MARKET_WATCH_SECONDS", default=90.0)
