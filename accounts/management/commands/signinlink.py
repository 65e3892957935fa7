"""`manage.py signinlink USERNAME`: print a one-time sign-in link for an admin, the way in
when the identity provider is down or password sign-in is off (PASSWORD_LOGIN=0)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from accounts import signin_links
from accounts.models import User
from audit import services as audit


class Command(BaseCommand):
    help = (
        "Print a link that signs an active admin in once, within --minutes (default 15). "
        "Give --site (e.g. https://chat.example.com) to print the whole URL, else its path."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--minutes", type=int, default=signin_links.DEFAULT_MINUTES)
        parser.add_argument("--site", default="", help="the site's address, e.g. https://chat.lan")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"there is no account named {options['username']!r}")
        if not user.is_admin:
            raise CommandError(f"{user.username} is not an active admin; links are for admins")
        if not 1 <= options["minutes"] <= 24 * 60:
            raise CommandError("--minutes must be between 1 and 1440")
        token = signin_links.make(user, options["minutes"])
        path = reverse("accounts:signin_link", args=[token])
        after = {"minutes": options["minutes"]}
        audit.record(None, "login.link_issued", user, after=after)
        self.stdout.write(options["site"].rstrip("/") + path)
