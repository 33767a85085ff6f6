"""The policy file (pure: text in, a frozen :class:`~fixup.policy.loader.Policy` out): the loader
(:mod:`~fixup.policy.loader`), the line-aware node walk it and the sections share
(:mod:`~fixup.policy.parser`), the ``aaa`` and ``terminate`` sections, and what a reload may
change (:mod:`~fixup.policy.reload`)."""
