"""Kubernetes as the on-prem queue: :mod:`.settings` (config), :mod:`.parse` (pure: API objects
-> domain), :mod:`.api` (calls and error mapping), :mod:`.informers` (LIST + WATCH caches) and
:mod:`.adapter` (:class:`~burst.queues.kubernetes.adapter.KubernetesQueue`)."""
