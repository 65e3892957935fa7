from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        # Deleting a conversation revokes its shares (a signal receiver).
        from conversations import shares  # noqa: F401
