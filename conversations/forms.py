"""Validation of what the chat page sends, over HTTP or the websocket."""

from __future__ import annotations

from collections.abc import Callable

from django import forms

MAX_MESSAGE = 100_000


class MessageForm(forms.Form):
    """A new message (or the edited last one) and the model to answer it."""

    content = forms.CharField(max_length=MAX_MESSAGE, strip=True)
    model = forms.CharField(max_length=200)

    def __init__(
        self,
        *args: object,
        models: list[str],
        may_use: Callable[[str], bool] | None = None,
        content_required: bool = True,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.models = models
        self.may_use = may_use  # the person's model access (None: every model)
        self.fields["content"].required = content_required
        self.fields["content"].error_messages["required"] = "Write a message first."
        self.fields["model"].error_messages["required"] = "Pick a model first."

    def clean_model(self) -> str:
        model = self.cleaned_data["model"]
        if model not in self.models:
            raise forms.ValidationError(f"The model {model} is not available.")
        if self.may_use is not None and not self.may_use(model):
            raise forms.ValidationError(
                f"You may not use the model {model}. Pick another, or ask an admin for access."
            )
        return model

    def summary(self) -> str:
        """Every error in one line, for the composer."""
        return " ".join(str(error) for errors in self.errors.values() for error in errors)


class SettingsForm(forms.Form):
    """The conversation's model and system prompt; either may be sent alone."""

    model = forms.CharField(max_length=200, required=False)
    system_prompt = forms.CharField(max_length=20_000, required=False, strip=False)


class RenameForm(forms.Form):
    title = forms.CharField(max_length=200, strip=True)
