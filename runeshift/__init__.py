"""runeshift: zero-downtime migration of the Tribot legacy world into Rune."""

__version__ = "0.1.0"
