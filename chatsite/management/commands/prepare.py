"""Everything a fresh or upgraded install needs before Daphne starts."""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand

from chatsite import startup


class Command(BaseCommand):
    help = "Migrate, collect static files and run the start-up tasks of every app."

    def handle(self, *args: object, **options: object) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        for task in startup.tasks():
            result = task()
            if result:
                self.stdout.write(str(result))
        self.stdout.write(self.style.SUCCESS("Ready."))
