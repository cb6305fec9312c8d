"""The cast: specific rows every generated world contains, whatever its scale.

Most quirks appear by chance in proportion to the scale, but a world at ``--scale 0.1`` is too
small for chance, so a few members, scripts and licenses play a named role on purpose (a member
with a mojibake name who buys licenses, a subscription whose renewal lands in the DST gap, ...).
They are generated in the same pass as every other row, not patched in afterwards; the roles
are named here so tests and the quirk catalogue can talk about them.
"""

from __future__ import annotations

from typing import Literal

MemberRole = Literal[
    "mojibake_buyer",
    "latin1_name",
    "emoji_name",
    "email_case_upper",
    "email_case_spaced",
    "blank_email",
    "ban_permanent",
    "ban_future",
    "ban_past",
    "flag_2",
    "flag_127",
    "flag_minus_1",
    "deleted_group",
    "comma_groups",
    "deleted_buyer",
    "deleted_author",
    "joined_unknown",
    "dst_fall_buyer",
    "dst_spring_buyer",
]

ScriptRole = Literal[
    "deleted_premium",
    "orphan_author",
    "slug_case_original",
    "slug_case_variant",
    "empty_category",
    "empty_status",
    "zero_created",
    "truncated_settings",
    "truncated_settings_2",
    "free_price_zero",
    "premium_flag_2",
    "mojibake_name",
    "latin1_description",
    "no_tags",
]

LATE_MEMBER_ROLES: tuple[MemberRole, ...] = (
    "mojibake_buyer",
    "emoji_name",
    "email_case_upper",
    "email_case_spaced",
    "blank_email",
    "ban_permanent",
    "ban_future",
    "ban_past",
    "flag_2",
    "flag_127",
    "flag_minus_1",
    "deleted_group",
    "comma_groups",
    "joined_unknown",
)
"""Roles played by members who joined after the forum's switch to UTF-8 output."""

EARLY_MEMBER_ROLES: tuple[MemberRole, ...] = (
    "latin1_name",
    "deleted_buyer",
    "deleted_author",
    "dst_fall_buyer",
    "dst_spring_buyer",
)
"""Roles played by members who joined early (real latin1 names; long enough histories)."""

SCRIPT_ROLES: tuple[ScriptRole, ...] = (
    "deleted_premium",
    "orphan_author",
    "slug_case_original",
    "slug_case_variant",
    "empty_category",
    "empty_status",
    "zero_created",
    "truncated_settings",
    "truncated_settings_2",
    "free_price_zero",
    "premium_flag_2",
    "mojibake_name",
    "latin1_description",
    "no_tags",
)

DST_FALL_BACK_START = (2021, 9, 7, 1, 30)
"""A monthly subscription starting here renews at 2021-11-07 01:30, which happened twice."""

DST_SPRING_FORWARD_START = (2021, 1, 14, 2, 30)
"""A monthly subscription starting here renews at 2021-03-14 02:30, which never happened."""

HUGE_COMPILE_LOGS = 3
"""Versions with a compile log of several MB, at every scale (MEDIUMTEXT, 2-4 MB each)."""
