"""chatsite settings: one file, driven by the environment (see the README's table)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    """Read a yes/no environment variable."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    """Read a comma-separated environment variable."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "data")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    if key := os.environ.get("SECRET_KEY"):
        return key
    # Generated once per install so sessions survive restarts without any configuration.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "chatsite",
    "accounts",
    "llm",
    "usage",
    "conversations",
    "api",
    "audit",
    "console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "chatsite.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "accounts.middleware.PendingUserMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.sso_context.sign_in_options",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'chatsite.sqlite3'}",
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Async views and consumers run their queries in short-lived threads: without a pool
    # each of them would open (and authenticate) a new PostgreSQL connection.
    # Added to, not replaced: DATABASE_URL may carry options of its own (?sslmode=require).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": int(os.environ.get("DATABASE_POOL_SIZE", "20")),
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # A file (not memory) so a Daphne started by the tests shares the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
    # Each thread keeps its connection: the sync thread that serves the chat sockets would
    # otherwise open one per ORM call. Checked before each call's first query, and after an
    # error, by a health check that can fail (chatsite/sqlite_backend; docs/architecture.md).
    DATABASES["default"]["ENGINE"] = "chatsite.sqlite_backend"
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("SQLITE_CONN_MAX_AGE", "300"))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Redis: the channel layer, login throttling, quotas, stream snapshots.
REDIS_URL = os.environ.get("REDIS_URL") or f"unix://{DATA_DIR / 'redis.sock'}"
# The pub/sub layer sends each publish, subscribe and unsubscribe of a worker through one
# connection per host entry, one at a time: listing the same Redis several times spreads
# channels and groups over that many connections, so a burst of socket opens and turn
# starts does not queue behind one (bench/README.md, "Soak").
CHANNEL_LAYER_CONNECTIONS = int(os.environ.get("CHANNEL_LAYER_CONNECTIONS", "8"))
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL] * max(1, CHANNEL_LAYER_CONNECTIONS)},
    }
}

SIGNUP_MODE = os.environ.get("SIGNUP_MODE", "approval")
if SIGNUP_MODE not in {"open", "approval", "closed"}:
    raise ValueError(f"SIGNUP_MODE must be open, approval or closed, not {SIGNUP_MODE!r}")

# Password sign-in and sign-up; off: single sign-on only (API keys work either way, and
# `manage.py signinlink` lets an admin in when the identity provider is down).
PASSWORD_LOGIN = env_bool("PASSWORD_LOGIN", True)

# Single sign-on with the team's OpenID Connect provider (accounts/oidc*.py), on when
# OIDC_ISSUER and OIDC_CLIENT_ID are set; the endpoints come from the issuer's discovery.
OIDC_ISSUER = os.environ.get("OIDC_ISSUER", "").strip()
OIDC_CLIENT_ID = os.environ.get("OIDC_CLIENT_ID", "").strip()
OIDC_CLIENT_SECRET = os.environ.get("OIDC_CLIENT_SECRET", "")
OIDC_SCOPES = os.environ.get("OIDC_SCOPES", "openid email profile")
OIDC_BUTTON_LABEL = os.environ.get("OIDC_BUTTON_LABEL", "Sign in with single sign-on")
OIDC_ADMIN_GROUPS = env_list("OIDC_ADMIN_GROUPS", "")
OIDC_SYNC_GROUPS = env_bool("OIDC_SYNC_GROUPS", False)
OIDC_GROUPS_CLAIM = os.environ.get("OIDC_GROUPS_CLAIM", "groups")
OIDC_TIMEOUT = float(os.environ.get("OIDC_TIMEOUT", "10"))
if not PASSWORD_LOGIN and not (OIDC_ISSUER and OIDC_CLIENT_ID):
    raise ValueError("PASSWORD_LOGIN=0 needs single sign-on: set OIDC_ISSUER and OIDC_CLIENT_ID")
# The switch first: with PASSWORD_LOGIN off it stops password checks by any door (the
# Django admin's too); sessions keep naming ModelBackend, and the provider's sign-ins the last.
AUTHENTICATION_BACKENDS = [
    "accounts.backends.PasswordSwitch",
    "django.contrib.auth.backends.ModelBackend",
    "accounts.oidc.OIDCBackend",
]

# Login throttling: attempts per window, per username and per client address.
LOGIN_ATTEMPTS_PER_USERNAME = int(os.environ.get("LOGIN_ATTEMPTS_PER_USERNAME", "5"))
LOGIN_ATTEMPTS_PER_ADDRESS = int(os.environ.get("LOGIN_ATTEMPTS_PER_ADDRESS", "20"))
LOGIN_THROTTLE_SECONDS = int(os.environ.get("LOGIN_THROTTLE_SECONDS", "300"))

# Default upstream connections, created or updated at start-up.
OLLAMA_BASE_URL = os.environ.get("OLLAMA_BASE_URL", "http://127.0.0.1:11434")
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")

# Behind a TLS-terminating proxy (see README, "Deployment").
if env_bool("SECURE_PROXY_SSL", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "chatsite.views.csrf_failure"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # No key reaches a log line, whoever logs it (a key sent in a URL's query string).
    "filters": {"redact_secrets": {"()": "chatsite.redaction.RedactSecrets"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# Whether people may share conversations with anyone who has the link (no account needed);
# off: only team links (signed-in, approved accounts), and existing "anyone" links answer 404.
SHARE_ANYONE = env_bool("SHARE_ANYONE", True)

# Images attached to chat messages: the largest file (bytes) and how many one message may carry.
# Their files go to the "attachments" storage when STORAGES names one, else under DATA_DIR.
IMAGE_MAX_BYTES = int(os.environ.get("IMAGE_MAX_BYTES", str(10 * 1024 * 1024)))
IMAGE_MAX_COUNT = int(os.environ.get("IMAGE_MAX_COUNT", "4"))
ATTACHMENTS_DIR = DATA_DIR / "attachments"

# Every worker looks for replies whose worker died (conversations/recovery.py).
ORPHAN_SWEEP = env_bool("ORPHAN_SWEEP", True)

# Use only the libraries' public APIs, never the private parts that the adapter modules
# (chatsite/*_adapter.py and others) reach into for speed; CI runs tests this way too.
LIBRARY_FALLBACKS = env_bool("LIBRARY_FALLBACKS", False)

# A generation's concurrency slot and token reservation are a lease of this many seconds,
# renewed by its worker while it runs: a worker that died frees them within one lease.
USAGE_SLOT_LEASE_SECONDS = float(os.environ.get("USAGE_SLOT_LEASE_SECONDS", "10"))

# Quotas per role (0 = unlimited); the same meter covers browser and API use. These are the
# role defaults: groups' and people's own limits, set by admins, come first (usage/limits.py).
QUOTAS = {
    "admin": {
        "requests_per_minute": int(os.environ.get("QUOTA_ADMIN_RPM", "0")),
        "concurrent": int(os.environ.get("QUOTA_ADMIN_CONCURRENT", "0")),
        "tokens_per_day": int(os.environ.get("QUOTA_ADMIN_TOKENS_PER_DAY", "0")),
        "tokens_per_month": int(os.environ.get("QUOTA_ADMIN_TOKENS_PER_MONTH", "0")),
    },
    "member": {
        "requests_per_minute": int(os.environ.get("QUOTA_MEMBER_RPM", "60")),
        "concurrent": int(os.environ.get("QUOTA_MEMBER_CONCURRENT", "4")),
        "tokens_per_day": int(os.environ.get("QUOTA_MEMBER_TOKENS_PER_DAY", "0")),
        "tokens_per_month": int(os.environ.get("QUOTA_MEMBER_TOKENS_PER_MONTH", "0")),
    },
}

# The engine's HTTP client and model catalog (seconds unless named otherwise).
LLM_CONNECT_TIMEOUT = float(os.environ.get("LLM_CONNECT_TIMEOUT", "5"))
LLM_FIRST_BYTE_TIMEOUT = float(os.environ.get("LLM_FIRST_BYTE_TIMEOUT", "300"))
LLM_CHUNK_TIMEOUT = float(os.environ.get("LLM_CHUNK_TIMEOUT", "120"))
LLM_MAX_CONNECTIONS = int(os.environ.get("LLM_MAX_CONNECTIONS", "1000"))
LLM_MAX_KEEPALIVE = int(os.environ.get("LLM_MAX_KEEPALIVE", "100"))
LLM_CATALOG_TTL = int(os.environ.get("LLM_CATALOG_TTL", "30"))
LLM_CATALOG_MISS_REFRESH = float(os.environ.get("LLM_CATALOG_MISS_REFRESH", "5"))
# Whether connections may reach loopback and private addresses (a local Ollama lives there);
# link-local and cloud metadata addresses are refused either way (llm/addresses.py).
LLM_ALLOW_PRIVATE_NETWORKS = env_bool("LLM_ALLOW_PRIVATE_NETWORKS", True)

# Request bodies (API calls with base64 images can be large), in MiB.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("MAX_REQUEST_MB", "32")) * 1024 * 1024
