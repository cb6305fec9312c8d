"""The legacy stand-in: the Rune service's HTTP API served from the legacy MySQL databases.

It writes what the legacy PHP app wrote (``tribot_repo.licenses`` rows with New York local
DATETIMEs), so its writes reach Rune the way real legacy writes do: through the catch-up.
Its idempotency ledger lives in a side database (``runeshift_standin`` by default) because
the legacy schema is not ours to change.
"""
