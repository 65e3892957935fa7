"""The Connections page: admins list, add, edit, enable, delete and test model servers."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import admin_required
from llm.catalog import DiscoveryError, probe
from llm.forms import ConnectionForm
from llm.models import Connection


@admin_required
def connections(request: HttpRequest) -> HttpResponse:
    """Every connection."""
    return render(request, "console/connections.html", {"connections": Connection.objects.all()})


@admin_required
def add_connection(request: HttpRequest) -> HttpResponse:
    """A new connection."""
    form = ConnectionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        connection = form.save()
        messages.success(request, f"Connection {connection.name} added.")
        return redirect("console:connections")
    return render(request, "console/connection_form.html", {"form": form, "connection": None})


@admin_required
def edit_connection(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a connection; the key field is write-only."""
    connection = get_object_or_404(Connection, pk=pk)
    form = ConnectionForm(request.POST or None, instance=connection)
    if request.method == "POST" and form.is_valid():
        form.save()
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
    connection.save()
    state = "enabled" if connection.enabled else "disabled"
    messages.success(request, f"Connection {connection.name} {state}.")
    return redirect("console:connections")


@admin_required
def delete_connection(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask, then delete a connection."""
    connection = get_object_or_404(Connection, pk=pk)
    if request.method == "POST":
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
