"""The audit log: one append-only entry per admin or security action."""
