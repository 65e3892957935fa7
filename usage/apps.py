from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage"

    def ready(self) -> None:
        # Changes of limits, groups, membership or role reach every worker's limits cache.
        from usage import limits  # noqa: F401
