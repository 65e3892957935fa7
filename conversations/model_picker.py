"""The chat's model picker: what the catalog knows of each model, and each person's last
choice, which new chats start with."""

from __future__ import annotations

from dataclasses import dataclass

from asgiref.sync import async_to_sync

from conversations.models import ModelChoice
from llm.catalog import CatalogModel, list_models

# Capabilities every chat model has: not worth a mention.
_OBVIOUS = {"completion", "chat"}


@dataclass(frozen=True)
class Choice:
    """One model in the picker."""

    name: str
    facts: str  # "llama · 3.2B · Q4_K_M · 128K context · tools, vision", "" when none known

    @property
    def label(self) -> str:
        return f"{self.name} — {self.facts}" if self.facts else self.name


def _context(length: int) -> str:
    if length <= 0:
        return ""
    return f"{length // 1024}K context" if length % 1024 == 0 else f"{length} context"


def facts(model: CatalogModel) -> str:
    """What the catalog knows of `model`, in one short line."""
    details = model.details or {}
    known = [
        str(details.get(key)).strip()
        for key in ("family", "parameter_size", "quantization_level")
        if isinstance(details.get(key), str) and details.get(key).strip()
    ]
    if context := _context(model.context_length):
        known.append(context)
    capabilities = [c for c in model.capabilities if isinstance(c, str) and c not in _OBVIOUS]
    if capabilities:
        known.append(", ".join(capabilities))
    return " · ".join(known)


def choices(names: list[str]) -> list[Choice]:
    """The picker's entries for the model `names` (those a person may use), in order."""
    try:
        by_name = {model.name: model for model in async_to_sync(list_models)()}
    except Exception:  # the catalog's own failure is logged where names were read
        by_name = {}
    return [Choice(name, facts(by_name[name]) if name in by_name else "") for name in names]


def remember(owner: object, model: str) -> None:
    """`model` is the person's latest choice."""
    ModelChoice.objects.update_or_create(owner=owner, defaults={"model": model})


def last_choice(owner: object) -> str:
    """The model the person last picked ("" if none)."""
    return ModelChoice.objects.filter(owner=owner).values_list("model", flat=True).first() or ""
