from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # Sign-outs and access changes close the person's open chat sockets.
        from accounts import signals  # noqa: F401
