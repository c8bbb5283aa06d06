"""User data for on-demand instances: install the requester's SSH key, never join the scheduler."""

from __future__ import annotations

from collections.abc import Callable

from burst.domain import Instance, Purpose
from burst.ondemand.errors import ServiceError
from burst.ondemand.settings import SSH_KEY_SETTING
from burst.ondemand.sshkeys import validate_ssh_key
from burst.ports import Store


def ondemand_user_data(key: str | None, ssh_user: str) -> str:
    """Boot script for an on-demand instance: install the requester's key. Never joins the
    scheduler. ``key`` was validated by :func:`validate_ssh_key` (base64 and a fixed type only),
    so it is inert inside single quotes."""
    lines = ["#!/bin/bash", "set -eu", f"u={ssh_user}", 'id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u"']
    if key:
        kind, body = validate_ssh_key(key)[0].split()
        lines += [
            'h=$(getent passwd "$u" | cut -d: -f6)',
            'install -d -m 700 -o "$u" -g "$u" "$h/.ssh"',
            f"echo '{kind} {body}' >> \"$h/.ssh/authorized_keys\"",
            'chown "$u:$u" "$h/.ssh/authorized_keys"; chmod 600 "$h/.ssh/authorized_keys"',
        ]
    return "\n".join(lines) + "\n"


def make_user_data_for(
    store: Store, ssh_user: str, fallback: Callable[[Instance], str] | None = None
) -> Callable[[Instance], str]:
    """A ``user_data_for`` for the Controller: on-demand instances get :func:`ondemand_user_data`
    with the owner's stored key; every other instance gets ``fallback`` (or the provider's
    template when that is None). Built from the stored instance, so a retried launch (after a
    crash or a transient error) boots exactly as its first try would have."""

    def user_data_for(inst: Instance) -> str:
        if inst.purpose is Purpose.ON_DEMAND:
            key = store.get_user_setting(inst.owner, SSH_KEY_SETTING) if inst.owner else None
            try:
                return ondemand_user_data(key, ssh_user)
            except ServiceError:
                return ondemand_user_data(None, ssh_user)
        return fallback(inst) if fallback is not None else ""

    return user_data_for
