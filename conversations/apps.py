from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        # Deleting a conversation revokes its shares, and an attachment's row its file
        # (signal receivers).
        from conversations import attachments, shares  # noqa: F401
