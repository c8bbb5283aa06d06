"""Slurm as the on-prem queue: :mod:`.settings` (config), :mod:`.parse` (pure: CLI output ->
domain) and :mod:`.adapter` (:class:`~burst.queues.slurm.adapter.SlurmQueue`, the CLI calls; its
docstring says how burst nodes join and leave, and why)."""
