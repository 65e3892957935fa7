"""Account forms."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm
from django.core.validators import MaxLengthValidator

from accounts.models import User

PASSWORD_MAX_LENGTH = 1024


class SignupForm(BaseUserCreationForm):
    """Username, optional email, password twice."""

    class Meta:
        model = User
        fields = ["username", "email"]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].help_text = "Optional. Only admins see it."
        for name in ("password1", "password2"):
            _bound_length(self.fields[name])

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("That username is taken. Choose another one.")
        return username


class LoginForm(AuthenticationForm):
    """Django's sign-in form with friendlier messages and bounded input."""

    error_messages = {
        "invalid_login": "That username and password do not match. Check both and try again.",
        "inactive": "This account has been deactivated. Ask an admin to reactivate it.",
    }

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        _bound_length(self.fields["password"])


def _bound_length(field: forms.CharField) -> None:
    # Hashing a megabyte-long password costs real CPU: refuse it with a message instead.
    field.max_length = PASSWORD_MAX_LENGTH
    field.validators.append(MaxLengthValidator(PASSWORD_MAX_LENGTH))
    field.widget.attrs["maxlength"] = PASSWORD_MAX_LENGTH
