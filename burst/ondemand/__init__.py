"""On-demand GPU instances: what a researcher asks for in Slack, and how the controller carries it out.

One rule holds across the package: **only the controller touches a cloud.**

* :mod:`burst.ondemand.settings`: the ``slack:`` config section (quotas, allowed offers, admins)
  and the store keys the on-demand parts share.
* :mod:`burst.ondemand.service`: :class:`~burst.ondemand.service.OnDemandService`, what the bot
  calls. It validates input, checks quotas, records requests in the store and reads status; it
  never calls a provider.
* :mod:`burst.ondemand.sshkeys`: SSH public-key validation.
* :mod:`burst.ondemand.userdata`: the boot script of an on-demand instance (the owner's key).
* :mod:`burst.ondemand.reconcile`: :func:`~burst.ondemand.reconcile.reconcile_requests`, the one
  call the controller makes after executing a plan to move requests along their lifecycle.
* :mod:`burst.ondemand.messages`: the text helpers every user-facing message here needs
  (escaping for Slack, times, durations) and best-effort delivery through the Notifier.
* :mod:`burst.ondemand.errors`: :class:`ServiceError` and :class:`Denied`, refusals whose text is
  safe to show to the user.

Grand-challenge bookkeeping for the bot lives in :mod:`burst.challenges`; the Slack renderings of
requests, challenges, status and budget live in ``bot/format.py``.

Texts produced here never hold secrets, and everything a user typed is escaped for Slack
(:func:`~burst.ondemand.messages.slack_escape`) before it is shown, so ``<!channel>`` in a note
cannot ping anyone.
"""
