"""Sign-up, sign-in (password, single sign-on, one-time link), sign-out, password change and
the waiting page, under /accounts/."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from accounts import link_views, oidc_views, views

app_name = "accounts"
urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", views.login_view, name="login"),
    path("logout/", oidc_views.Logout.as_view(), name="logout"),
    path("oidc/login/", oidc_views.start, name="oidc_login"),
    path("oidc/callback/", oidc_views.callback, name="oidc_callback"),
    path("link/<str:token>/", link_views.sign_in_with_link, name="signin_link"),
    path("pending/", views.pending, name="pending"),
    path(
        "password/",
        auth_views.PasswordChangeView.as_view(
            template_name="accounts/password_change.html",
            success_url=reverse_lazy("accounts:password_changed"),
        ),
        name="password_change",
    ),
    path(
        "password/done/",
        auth_views.PasswordChangeDoneView.as_view(template_name="accounts/password_changed.html"),
        name="password_changed",
    ),
]
