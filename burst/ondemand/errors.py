"""Refusals the on-demand service (and the grand-challenge book) give the user."""

from __future__ import annotations


class ServiceError(Exception):
    """A user-facing refusal. The message is safe to show in Slack as is."""


class Denied(ServiceError):
    """A non-admin tried an admin action (audited)."""

