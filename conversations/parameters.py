"""A conversation's generation parameters: the form that sets them and the engine options
they become. A blank field leaves the model server's default."""

from __future__ import annotations

from django import forms

from conversations.models import Conversation

# Native (Ollama) option name of each conversation field; the engine translates them
# for OpenAI-compatible servers (num_predict -> max_tokens; num_ctx has no equivalent).
OPTION_NAMES = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "num_predict",
    "num_ctx": "num_ctx",
    "seed": "seed",
}
FIELDS = tuple(OPTION_NAMES)


class ParametersForm(forms.ModelForm):
    """Temperature, top_p, max tokens, context length and seed; blank = server default."""

    temperature = forms.FloatField(required=False, min_value=0, max_value=2)
    top_p = forms.FloatField(required=False, min_value=0, max_value=1, label="Top p")
    max_tokens = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)
    num_ctx = forms.IntegerField(
        required=False, min_value=1, max_value=10_000_000, label="Context length"
    )
    seed = forms.IntegerField(required=False, min_value=-(2**63), max_value=2**63 - 1)

    class Meta:
        model = Conversation
        fields = FIELDS

    def summary(self) -> str:
        """Every error in one line, naming its field."""
        return " ".join(
            f"{self[name].label}: {error}"
            for name, errors in self.errors.items()
            for error in errors
        )


def options_for(conversation: Conversation) -> dict | None:
    """The engine's `options` for the conversation's set parameters (None when none are)."""
    options = {
        option: getattr(conversation, name)
        for name, option in OPTION_NAMES.items()
        if getattr(conversation, name) is not None
    }
    return options or None


def values(conversation: Conversation) -> dict[str, object]:
    """The set parameters by field name, for exports."""
    return {name: getattr(conversation, name) for name in FIELDS}
