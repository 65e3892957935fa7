"""The Connections page: admins list, add, edit, enable, delete and test model servers."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import admin_required
from audit import services as audit
from llm.catalog import DiscoveryError, probe
from llm.forms import ConnectionForm
from llm.models import Connection

AUDITED_FIELDS = ("name", "kind", "base_url", "prefix", "enabled", "allowed_models")


def _audited(connection: Connection) -> dict[str, object]:
    """What the audit log keeps of a connection: its settings and whether a key is stored
    (never the key itself)."""
    values: dict[str, object] = {name: getattr(connection, name) for name in AUDITED_FIELDS}
    values["api_key"] = "stored" if connection.api_key_encrypted else "none"
    return values


def _record_edit(request: HttpRequest, connection: Connection, before: dict, old_key: str) -> None:
    """Record what an edit changed; a key entered again reads as "changed"."""
    after = _audited(connection)
    if connection.api_key_encrypted != old_key and after["api_key"] == "stored":
        after["api_key"] = "changed" if before["api_key"] == "stored" else "stored"
    changed = [name for name in after if after[name] != before[name]]
    if changed:
        audit.record(
            request,
            "connection.changed",
            connection,
            before={name: before[name] for name in changed},
            after={name: after[name] for name in changed},
        )


@admin_required
def connections(request: HttpRequest) -> HttpResponse:
    """Every connection."""
    return render(request, "console/connections.html", {"connections": Connection.objects.all()})


@admin_required
def add_connection(request: HttpRequest) -> HttpResponse:
    """A new connection."""
    form = ConnectionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            connection = form.save()
            audit.record(request, "connection.added", connection, after=_audited(connection))
        messages.success(request, f"Connection {connection.name} added.")
        return redirect("console:connections")
    return render(request, "console/connection_form.html", {"form": form, "connection": None})


@admin_required
def edit_connection(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a connection; the key field is write-only."""
    connection = get_object_or_404(Connection, pk=pk)
    before, old_key = _audited(connection), connection.api_key_encrypted
    form = ConnectionForm(request.POST or None, instance=connection)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            form.save()
            _record_edit(request, connection, before, old_key)
        messages.success(request, f"Connection {connection.name} saved.")
        if form.key_removed:
            messages.warning(
                request,
                f"The stored API key of {connection.name} was removed: it belonged to the "
                "previous server. Enter the new server's key if it needs one.",
            )
        return redirect("console:connections")
    context = {"form": form, "connection": connection}
    return render(request, "console/connection_form.html", context)


@admin_required
@require_POST
def toggle_connection(request: HttpRequest, pk: int) -> HttpResponse:
    """Enable or disable a connection."""
    connection = get_object_or_404(Connection, pk=pk)
    connection.enabled = not connection.enabled
    state = "enabled" if connection.enabled else "disabled"
    with transaction.atomic():
        connection.save()
        audit.record(
            request,
            f"connection.{state}",
            connection,
            before={"enabled": not connection.enabled},
            after={"enabled": connection.enabled},
        )
    messages.success(request, f"Connection {connection.name} {state}.")
    return redirect("console:connections")


@admin_required
def delete_connection(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask, then delete a connection."""
    connection = get_object_or_404(Connection, pk=pk)
    if request.method == "POST":
        with transaction.atomic():
            audit.record(request, "connection.deleted", connection, before=_audited(connection))
            connection.delete()
        messages.success(request, f"Connection {connection.name} deleted.")
        return redirect("console:connections")
    return render(request, "console/connection_delete.html", {"connection": connection})


@admin_required
@require_POST
def test_connection(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask the upstream for its models and version; show the result or the exact error
    (the address and the transport's words: admins see what members are spared)."""
    connection = get_object_or_404(Connection, pk=pk)
    try:
        result, ok = async_to_sync(probe)(connection), True
    except DiscoveryError as exc:
        result, ok = str(exc), False
    context = {"connection": connection, "result": result, "ok": ok}
    if request.htmx:
        return render(request, "console/connections.html#probe", context)
    (messages.success if ok else messages.error)(request, f"{connection.name}: {result}")
    return redirect("console:connections")
