"""A small OpenID Connect provider on a loopback port, for the single sign-on tests.

It speaks the protocol over real HTTP from a background thread, so in-process tests, a Daphne
started by the tests and a browser all use it as they would Keycloak:

    with MockProvider() as provider:
        provider.add(Person("u-1", "grace", email="grace@example.com", groups=["research"]))
        provider.signed_in = "grace"    # who the authorize endpoint approves without a form
        ...  # OIDC_ISSUER=provider.url, OIDC_CLIENT_ID=provider.client_id, ...

Discovery, a JWKS holding a fresh RSA key, an authorize endpoint (a login form when
`interactive`, else it approves `signed_in` at once, or answers `deny`), a token endpoint that
checks the client, the redirect URI and the PKCE verifier (S256) and returns an ID token signed
with that key, userinfo, and an end-session endpoint. `tweaks` makes the next ID tokens wrong
in one way (audience, issuer, expiry, nonce, signature) for the tests that must refuse them.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

PASSWORD = "provider password"


@dataclass
class Person:
    """Someone with an account at the provider."""

    sub: str
    username: str
    email: str | None = None
    email_verified: bool | str = True
    name: str = ""
    groups: list[str] = field(default_factory=list)

    def claims(self) -> dict[str, Any]:
        found: dict[str, Any] = {"sub": self.sub, "preferred_username": self.username}
        if self.email is not None:
            found["email"] = self.email
            found["email_verified"] = self.email_verified
        if self.name:
            found["name"] = self.name
            found["given_name"], _, found["family_name"] = self.name.partition(" ")
        found["groups"] = list(self.groups)
        return found


@dataclass
class Tweaks:
    """Ways to make the next ID tokens wrong."""

    audience: str | list[str] | None = None
    issuer: str | None = None
    expires_in: int = 300
    nonce: str | None = None
    # "payload": claims changed after signing; "other_key": signed by a key not in the JWKS
    # under the published kid; "hs256": HMAC with the client secret; "none": unsigned.
    signature: str | None = None
    omit_id_token: bool = False
    userinfo_sub: str | None = None


@dataclass
class Grant:
    """An authorization code, until the token endpoint redeems it."""

    person: Person
    redirect_uri: str
    challenge: str
    nonce: str


class MockProvider:
    """The provider; a context manager that serves while it is open."""

    def __init__(
        self,
        client_id: str = "chatsite",
        client_secret: str = "mock-provider-client-secret-0123456789",
    ):
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "key-" + secrets.token_hex(4)
        self.people: dict[str, Person] = {}
        self.signed_in: str | None = None
        self.interactive = False
        self.deny: str | None = None
        self.tweaks = Tweaks()
        self.hits: Counter[str] = Counter()
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.logouts: list[dict[str, str]] = []
        self.codes: dict[str, Grant] = {}
        self.tokens: dict[str, Person] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The issuer (and base URL)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def settings(self, **extra: object) -> dict[str, object]:
        """Django settings that point the site at this provider."""
        return {
            "OIDC_ISSUER": self.url,
            "OIDC_CLIENT_ID": self.client_id,
            "OIDC_CLIENT_SECRET": self.client_secret,
            **extra,
        }

    def add(self, person: Person) -> Person:
        self.people[person.username] = person
        return person

    def __enter__(self) -> MockProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop answering (the port then refuses connections)."""
        self._server.shutdown()
        self._server.server_close()

    # -- what the endpoints answer --------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "userinfo_endpoint": f"{self.url}/userinfo",
            "jwks_uri": f"{self.url}/jwks",
            "end_session_endpoint": f"{self.url}/logout",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "scopes_supported": ["openid", "email", "profile", "groups"],
        }

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def issue_code(self, person: Person, query: dict[str, str]) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.codes[code] = Grant(
                person, query["redirect_uri"], query["code_challenge"], query.get("nonce", "")
            )
        return code

    def id_token(self, grant: Grant) -> str:
        tweaks, now = self.tweaks, int(time.time())
        claims = {
            **grant.person.claims(),
            "iss": tweaks.issuer or self.url,
            "aud": tweaks.audience if tweaks.audience is not None else self.client_id,
            "iat": now,
            "exp": now + tweaks.expires_in,
            "auth_time": now,
            "nonce": tweaks.nonce if tweaks.nonce is not None else grant.nonce,
        }
        return self.sign(claims)

    def sign(self, claims: dict[str, Any]) -> str:
        how = self.tweaks.signature
        headers = {"kid": self.kid}
        if how == "hs256":
            return jwt.encode(claims, self.client_secret, algorithm="HS256", headers=headers)
        if how == "none":
            return jwt.encode(claims, None, algorithm="none", headers=headers)
        key = self.key
        if how == "other_key":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(claims, key, algorithm="RS256", headers=headers)
        if how == "payload":
            header, _, signature = token.split(".")
            changed = {**claims, "sub": claims["sub"] + "-someone-else"}
            body = base64.urlsafe_b64encode(json.dumps(changed).encode()).rstrip(b"=").decode()
            token = f"{header}.{body}.{signature}"
        return token

    def redeem(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict]:
        """The token endpoint's answer to `form`."""
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        if client_id != self.client_id or secret != self.client_secret:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "unknown code"}
        verifier = form.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verifier"}
        access = secrets.token_urlsafe(24)
        self.tokens[access] = grant.person
        answer = {"access_token": access, "token_type": "Bearer", "expires_in": 300}
        if not self.tweaks.omit_id_token:
            answer["id_token"] = self.id_token(grant)
        return 200, answer

    def userinfo(self, authorization: str) -> tuple[int, dict]:
        person = self.tokens.get(authorization.removeprefix("Bearer ").strip())
        if person is None:
            return 401, {"error": "invalid_token"}
        claims = person.claims()
        if self.tweaks.userinfo_sub is not None:
            claims["sub"] = self.tweaks.userinfo_sub
        return 200, claims


def _problem(query: dict[str, str], provider: MockProvider) -> str:
    """Why an authorization request is refused ("" when it is fine)."""
    if query.get("response_type") != "code" or query.get("client_id") != provider.client_id:
        return "unknown client or response type"
    if "openid" not in query.get("scope", "").split():
        return "the openid scope is missing"
    if not query.get("redirect_uri") or not query.get("state") or not query.get("nonce"):
        return "redirect_uri, state and nonce are required"
    if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
        return "PKCE with S256 is required"
    return ""


def _handler(provider: MockProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            provider.hits[parts.path] += 1
            query = {name: values[0] for name, values in parse_qs(parts.query).items()}
            if parts.path == "/.well-known/openid-configuration":
                self.json(200, provider.discovery())
            elif parts.path == "/jwks":
                self.json(200, provider.jwks())
            elif parts.path == "/authorize":
                self.authorize(query)
            elif parts.path == "/userinfo":
                self.json(*provider.userinfo(self.headers.get("Authorization", "")))
            elif parts.path == "/logout":
                provider.logouts.append(query)
                back = query.get("post_logout_redirect_uri")
                if back:
                    self.redirect(back)
                else:
                    self.page(200, "<h1>Signed out of the provider</h1>")
            else:
                self.json(404, {"error": "not found"})

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            provider.hits[parts.path] += 1
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if parts.path == "/token":
                provider.token_requests.append(form)
                self.json(*provider.redeem(form, self.basic()))
            elif parts.path == "/authorize":
                self.login(form)
            else:
                self.json(404, {"error": "not found"})

        def authorize(self, query: dict[str, str]) -> None:
            provider.authorize_requests.append(query)
            problem = _problem(query, provider)
            if problem:
                self.page(400, f"<h1>Bad request</h1><p>{html.escape(problem)}</p>")
            elif provider.deny:
                self.back(query, error=provider.deny, error_description="The user said no")
            elif provider.interactive:
                self.page(200, _login_form(query))
            else:
                self.back(
                    query, code=provider.issue_code(provider.people[provider.signed_in], query)
                )

        def login(self, form: dict[str, str]) -> None:
            person = provider.people.get(form.get("username", ""))
            if person is None or form.get("password") != PASSWORD:
                self.page(200, _login_form(form, "Wrong username or password."))
                return
            self.back(form, code=provider.issue_code(person, form))

        def back(self, query: dict[str, str], **params: str) -> None:
            target = query["redirect_uri"] + "?" + urlencode({**params, "state": query["state"]})
            self.redirect(target)

        def basic(self) -> tuple[str, str] | None:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return user, password

        def redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def json(self, status: int, body: dict) -> None:
            self.send(status, json.dumps(body).encode(), "application/json")

        def page(self, status: int, body: str) -> None:
            document = f"<!doctype html><title>Mock provider</title><main>{body}</main>"
            self.send(status, document.encode(), "text/html; charset=utf-8")

        def send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _login_form(query: dict[str, str], error: str = "") -> str:
    keep = (
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    )
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(query.get(name, ""))}">'
        for name in keep
    )
    alert = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return (
        f"<h1>Mock provider sign-in</h1>{alert}"
        f'<form method="post" action="/authorize">{hidden}'
        '<label>Username <input name="username" autocomplete="username"></label>'
        '<label>Password <input name="password" type="password"></label>'
        "<button type=submit>Continue</button></form>"
    )
