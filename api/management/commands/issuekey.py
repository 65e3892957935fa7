"""`manage.py issuekey USERNAME`: a new API key, printed alone on stdout for automation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import ApiKey, User


class Command(BaseCommand):
    help = "Issue a personal API key for USERNAME and print the secret (shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="issued from the command line", help="key name")
        parser.add_argument("--models", default="", help="comma-separated allowed models")
        parser.add_argument("--expires-days", type=int, default=None, help="days until expiry")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = User.objects.get(username=options["username"])
        except User.DoesNotExist:
            raise CommandError(f"no user called {options['username']!r}") from None
        if not user.is_active or user.is_pending:
            raise CommandError(f"{user.username} is not an active, approved account")
        name = options["name"].strip()[:100] or "issued from the command line"
        days = options["expires_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-days must be a positive number of days")
        models = [m.strip() for m in options["models"].split(",") if m.strip()]
        _, secret = ApiKey.issue(
            user,
            name,
            allowed_models=models,
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
        self.stdout.write(secret)
