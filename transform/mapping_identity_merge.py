"""Which Shopify customers are forum members: the customer -> account merge (decision 0004).

Shopify customers match forum members by email, trimmed and lowercased, but
not always, and not always one to one. The rules, in order:

1. Customers are grouped by normalised email. Within a group the customer with
   the lowest id holds the email; every other one is a ``customers_share_email``
   conflict and becomes an account of its own that cannot log in.
2. The holder is merged into the member account with that email when exactly
   one member has it and that account can log in: the account gains
   ``shopify_customer_id`` and nothing else (the forum member wins: name, email,
   roles stay the member's).
3. When several members have the email (``customer_matches_several_members``),
   or the only one cannot log in (``member_cannot_log_in``), nobody can say which
   person bought: the customer becomes its own account that cannot log in, and
   the conflict is listed. Nothing is merged on a guess.
4. Every other customer (no email, or an email no member has) becomes its own
   account that can log in.

The planner is pure: the caller reads the members' accounts from the target
and records the plan (``runeshift.identity_conflicts``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

IdentityRule = Literal[
    "customers_share_email", "customer_matches_several_members", "member_cannot_log_in"
]
Outcome = Literal["merged", "own_account", "own_account_no_login"]


@dataclass(frozen=True)
class CustomerIdentity:
    """A customer as the merge sees it: its source key, numeric id and normalised email."""

    key: str
    shopify_customer_id: int | None
    email: str | None


@dataclass(frozen=True)
class MemberAccount:
    """A member's account in the target (``legacy_member_id`` set)."""

    account_id: str
    legacy_member_id: int
    email: str | None
    can_login: bool


@dataclass(frozen=True)
class IdentityConflict:
    """A customer the rules would not merge, and why (one row of the conflict report)."""

    customer_key: str
    shopify_customer_id: int | None
    email: str
    rule: IdentityRule
    outcome: Outcome
    competing: tuple[str, ...]  # other customer keys or member ids with the same email
    detail: str


@dataclass
class IdentityPlan:
    """Where each customer goes: merged into a member's account, or an account of its own."""

    merged: dict[str, str] = field(default_factory=dict)  # customer key -> member account id
    merged_members: dict[str, int] = field(default_factory=dict)  # customer key -> member id
    no_login: set[str] = field(default_factory=set)  # own accounts that cannot log in
    conflicts: list[IdentityConflict] = field(default_factory=list)

    def outcome(self, key: str) -> Outcome:
        if key in self.merged:
            return "merged"
        return "own_account_no_login" if key in self.no_login else "own_account"


def _order(key: str) -> tuple[int, int | str]:
    """Numeric keys in numeric order (ids above 2^53 included), then CSV keys as text."""
    return (0, int(key)) if key.isdigit() else (1, key)


def plan_identity_merge(
    customers: Iterable[CustomerIdentity], members: Iterable[MemberAccount]
) -> IdentityPlan:
    """Apply the merge rules (module docstring) to every customer."""
    by_email: dict[str, list[MemberAccount]] = defaultdict(list)
    for member in members:
        if member.email:
            by_email[member.email].append(member)
    groups: dict[str, list[CustomerIdentity]] = defaultdict(list)
    plan = IdentityPlan()
    for customer in customers:
        if customer.email:
            groups[customer.email].append(customer)
    for email, group in groups.items():
        group.sort(key=lambda c: _order(c.key))
        holder, *others = group
        for other in others:
            plan.no_login.add(other.key)
            plan.conflicts.append(
                IdentityConflict(
                    other.key,
                    other.shopify_customer_id,
                    email,
                    "customers_share_email",
                    "own_account_no_login",
                    (holder.key,),
                    f"customer {holder.key} has the same email and holds it",
                )
            )
        matches = sorted(by_email.get(email, ()), key=lambda m: m.legacy_member_id)
        if not matches:
            continue
        competing = tuple(str(m.legacy_member_id) for m in matches)
        if len(matches) > 1:
            login = [m.legacy_member_id for m in matches if m.can_login]
            plan.no_login.add(holder.key)
            plan.conflicts.append(
                IdentityConflict(
                    holder.key,
                    holder.shopify_customer_id,
                    email,
                    "customer_matches_several_members",
                    "own_account_no_login",
                    competing,
                    f"members {', '.join(competing)} have this email"
                    + (f" (member {login[0]} logs in with it)" if login else ""),
                )
            )
        elif not matches[0].can_login:
            plan.no_login.add(holder.key)
            plan.conflicts.append(
                IdentityConflict(
                    holder.key,
                    holder.shopify_customer_id,
                    email,
                    "member_cannot_log_in",
                    "own_account_no_login",
                    competing,
                    f"member {competing[0]} has this email but its account cannot log in",
                )
            )
        else:
            plan.merged[holder.key] = matches[0].account_id
            plan.merged_members[holder.key] = matches[0].legacy_member_id
    return plan
