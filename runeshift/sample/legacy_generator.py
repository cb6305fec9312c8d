"""Rows of the legacy world, table by table, from a scale and a seed (no database needed).

Design note. Members and scripts are planned up front (compact per-row facts: when they joined
or were created, whether they were later deleted, which role of the cast they play); every other
table is streamed from those plans, so a million licenses never sit in memory as dicts. Each
table draws from its own ``random.Random("<seed>/<table>")``, so the rows of one table do not
shift when another table's logic changes, and one (scale, seed) always yields the same bytes.

Deleted members and scripts are generated like every other row, and their dependants
(licenses, reviews, scripts they authored) are created inside their lifetime; then the deleted
rows alone are not written. That is how the orphans of the real system came about, so an orphan
license has a plausible history.

Values are yielded as ``None`` (NULL), ``int`` or a *byte string*: a ``str`` whose code points
are the bytes to store (``'Jos\\xc3\\xa9'`` is the UTF-8 spelling of José in a latin1 column).
The loader writes them with ``CHARACTER SET binary`` so the bytes land exactly as meant.
"""

from __future__ import annotations

import base64
import bisect
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import accumulate

from runeshift.sample.legacy_cast import (
    DST_FALL_BACK_START,
    DST_SPRING_FORWARD_START,
    EARLY_MEMBER_ROLES,
    HUGE_COMPILE_LOGS,
    LATE_MEMBER_ROLES,
    SCRIPT_ROLES,
    MemberRole,
    ScriptRole,
)
from runeshift.sample.legacy_clock import (
    DAY,
    FORUM_OPENED,
    HOUR,
    UTF8_SWITCH,
    WORLD_NOW,
    ZERO_DATETIME,
    DatetimeFormatter,
    add_months,
    utc_to_wall,
    wall_seconds,
    wall_to_utc,
)
from runeshift.sample.legacy_vocabulary import (
    ACCENTED_NAMES,
    CATEGORY_BY_ACTIVITY,
    CHANGELOG_LINES,
    COMPILE_ERROR_LINES,
    COMPILE_OK_LINES,
    DESCRIPTION_EXTRAS_LATIN1,
    DESCRIPTION_EXTRAS_UTF8,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    HANDLE_SUFFIXES,
    HANDLE_WORDS,
    NON_ASCII_SCRIPT_NAMES,
    REVIEW_BODIES,
    SCRIPT_ACTIVITIES,
    SCRIPT_PREFIXES,
    SCRIPT_SUFFIXES,
    SCRIPT_TAGS,
    TIMEZONES,
    UTF8_ONLY_NAMES,
)
from runeshift.sample.php_serializer import PhpValue, php_serialize
from runeshift.sample.secret_canary import SECRET_CANARY
from runeshift.sample.shopify_linkage import (
    ABOVE_2_53_ORDER_ID,
    ABOVE_2_53_SINCE,
    FIRST_LINE_ID,
    FIRST_ORDER_ID,
    STORE_OPENED,
    currency_for_order,
    lifetime_price_usd,
    price_in_currency,
)

Field = None | int | str
Row = tuple[Field, ...]

MEMBERS_PER_SCALE = 2_000
LICENSES_PER_SCALE = 10_000
SCRIPTS_PER_SCALE = 120
REVIEWS_PER_SCALE = 1_500
INSTANCE_PACKS_PER_SCALE = 1_000
API_SESSIONS_PER_SCALE = 20

DELETED_GROUP_ID = 9
GROUPS: tuple[tuple[int, str, int, str | None], ...] = (
    # (g_id, g_title as byte string, g_is_staff, g_icon); 9 and 11 were deleted long ago.
    (2, "Guests", 0, None),
    (3, "Members", 0, None),
    (4, "Administrators", 1, "/public/style_images/ranks/admin.png"),
    (5, "Banned", 0, None),
    (6, "Moderators", 2, "/public/style_images/ranks/mod.png"),
    (7, "Scripters", 0, "/public/style_images/ranks/scripter.png"),
    (8, "Beta Testers", 0, None),
    (10, "Donators", 0, "/public/style_images/ranks/donator.png"),
    (12, "VIP", 0, "/public/style_images/ranks/vip.png"),
    (13, "Premium Scripter", 0, "/public/style_images/ranks/premium.png"),
    (14, "Mod\xe9rateurs (FR)", 127, None),  # a real latin1 title
    (15, "Community Helpers \xe2\x9c\x93", -1, None),  # UTF-8 bytes of '✓' in a latin1 column
)

BCRYPT_ALPHABET = bytes.maketrans(b"+", b".")
EMOJI_IN_NAMES = "🔥🐉"


def u8(text: str) -> str:
    """The UTF-8 bytes of ``text`` as a byte string."""
    return text.encode("utf-8").decode("latin-1")


def _ascii_handle(text: str) -> str:
    return "".join(ch for ch in text if ch.isascii() and ch.isalnum()) or "user"


def _scaled(per_scale: int, scale: float, minimum: int) -> int:
    return max(minimum, round(per_scale * scale))


@dataclass
class MemberPlan:
    """What later tables need to know about one member."""

    member_id: int
    joined: int  # true UTC join instant (the row may say 0 = unknown)
    deleted_at: int | None  # set for members deleted before the snapshot: not written
    scripter: bool
    role: MemberRole | None = None

    @property
    def gone(self) -> int:
        return self.deleted_at if self.deleted_at is not None else WORLD_NOW


@dataclass
class ScriptPlan:
    """What later tables need to know about one script."""

    script_id: int
    created: int  # true UTC creation instant (the row may hold a zero date)
    deleted_at: int | None
    premium: bool
    monthly_cents: int | None
    slug: str
    author_id: int
    popularity: float
    role: ScriptRole | None = None

    @property
    def gone(self) -> int:
        return self.deleted_at if self.deleted_at is not None else WORLD_NOW


@dataclass
class LicenseDraft:
    created: int
    cart: int
    member_id: int
    script_id: int
    kind: str
    starts: int  # wall seconds
    expires: int | None  # wall seconds; None = zero date (never expires)
    usd_cents: int
    refunded: int
    updated: int


@dataclass
class _Versions:
    """Per-version facts compile_jobs needs."""

    ids: list[int] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    uploaded: list[int] = field(default_factory=list)
    compiled: list[int] = field(default_factory=list)


class LegacyWorldGenerator:
    """Rows of every legacy table for one ``(scale, seed)``; see the module note."""

    def __init__(self, *, scale: float, seed: int) -> None:
        if scale <= 0:
            raise ValueError("scale must be positive")
        self.scale = scale
        self.seed = seed
        self.fmt = DatetimeFormatter()
        self.n_members = _scaled(MEMBERS_PER_SCALE, scale, 150)
        self.n_scripts = _scaled(SCRIPTS_PER_SCALE, scale, 24)
        self.n_licenses = _scaled(LICENSES_PER_SCALE, scale, 600)
        self.n_reviews = _scaled(REVIEWS_PER_SCALE, scale, 60)
        self.n_packs = _scaled(INSTANCE_PACKS_PER_SCALE, scale, 40)
        self.n_sessions = _scaled(API_SESSIONS_PER_SCALE, scale, 20)
        self.members = self._plan_members()
        self.member_roles: dict[MemberRole, MemberPlan] = {
            m.role: m for m in self.members if m.role is not None
        }
        self.scripts = self._plan_scripts()
        self.script_roles: dict[ScriptRole, ScriptPlan] = {
            s.role: s for s in self.scripts if s.role is not None
        }
        self._versions = _Versions()

    def rng(self, table: str) -> random.Random:
        return random.Random(f"{self.seed}/{table}")

    # -- plans -------------------------------------------------------------------------------

    def _plan_members(self) -> list[MemberPlan]:
        rng = self.rng("member-plan")
        span = WORLD_NOW - 30 * DAY - FORUM_OPENED
        joined = sorted(
            FORUM_OPENED + int(span * rng.random() ** 0.7) for _ in range(self.n_members)
        )
        plans = [
            MemberPlan(member_id=i + 1, joined=j, deleted_at=None, scripter=rng.random() < 0.04)
            for i, j in enumerate(joined)
        ]
        # Member 1 is the forum's founder; the cast is drawn from the rest.
        early = [p for p in plans[1:] if p.joined < UTF8_SWITCH - 30 * DAY]
        late = [
            p
            for p in plans[1:]
            if p.joined >= UTF8_SWITCH + 30 * DAY and p.joined < WORLD_NOW - 400 * DAY
        ]
        if len(early) < len(EARLY_MEMBER_ROLES) or len(late) < len(LATE_MEMBER_ROLES):
            raise ValueError("too few members for the cast; use a larger scale")
        for plan, role in zip(
            rng.sample(early, len(EARLY_MEMBER_ROLES)), EARLY_MEMBER_ROLES, strict=True
        ):
            plan.role = role
        for plan, role in zip(
            rng.sample(late, len(LATE_MEMBER_ROLES)), LATE_MEMBER_ROLES, strict=True
        ):
            plan.role = role
        for plan in plans[1:]:
            dies = plan.role in ("deleted_buyer", "deleted_author") or (
                plan.role is None and rng.random() < 0.02
            )
            if dies:
                life = WORLD_NOW - plan.joined
                plan.deleted_at = plan.joined + int(life * rng.uniform(0.5, 0.9))
            if plan.role == "deleted_author":
                plan.scripter = True
        plans[0].scripter = True
        return plans

    def _plan_scripts(self) -> list[ScriptPlan]:
        rng = self.rng("script-plan")
        start = FORUM_OPENED + 150 * DAY
        span = WORLD_NOW - 60 * DAY - start
        created = sorted(start + int(span * rng.random() ** 0.9) for _ in range(self.n_scripts))
        scripters = [m for m in self.members if m.scripter and m.role != "deleted_author"]
        deleted_author = next(m for m in self.members if m.role == "deleted_author")
        scripter_joins = [m.joined for m in scripters]
        plans: list[ScriptPlan] = []
        roles = list(SCRIPT_ROLES)
        # The oldest third hosts the roles that need a long history (deleted while selling).
        role_ids = rng.sample(range(1, self.n_scripts + 1), len(roles))
        role_ids.sort()
        role_by_id: dict[int, ScriptRole] = {}
        old = [i for i in range(1, self.n_scripts // 3 + 1)]
        role_by_id[rng.choice(old)] = "deleted_premium"
        free_ids = [i for i in role_ids if i not in role_by_id]
        for sid, role_name in zip(
            free_ids, [r for r in roles if r != "deleted_premium"], strict=False
        ):
            role_by_id[sid] = role_name
        for i, when in enumerate(created):
            sid = i + 1
            role: ScriptRole | None = role_by_id.get(sid)
            # The three oldest scripts always sell, so every world has store history to replay.
            premium = role in ("deleted_premium", "premium_flag_2", "free_price_zero") or (
                role is None and (sid <= 3 or rng.random() < 0.45)
            )
            monthly: int | None = None
            if premium:
                monthly = rng.choice((499, 799, 999, 999, 1299, 1499, 1999))
                if role == "free_price_zero":
                    monthly = 0
            author: MemberPlan
            if role == "orphan_author":
                # Uploaded while its author still existed; the author's account went later.
                author = deleted_author
                if not author.joined < when < author.gone:
                    when = author.joined + (author.gone - author.joined) // 2
            else:
                # Members are planned in join order, so the scripters who had joined are a prefix.
                joined_before = bisect.bisect_left(scripter_joins, when)
                author = rng.choice(scripters[:joined_before] or scripters)
            deleted_at: int | None = None
            if role == "deleted_premium" or (role is None and sid > 3 and rng.random() < 0.04):
                deleted_at = when + int((WORLD_NOW - when) * rng.uniform(0.4, 0.8))
            plans.append(
                ScriptPlan(
                    script_id=sid,
                    created=when,
                    deleted_at=deleted_at,
                    premium=premium,
                    monthly_cents=monthly,
                    slug="",
                    author_id=author.member_id,
                    # Scripts that got deleted were the ones nobody used much.
                    popularity=rng.paretovariate(1.2) * (0.1 if deleted_at else 1.0),
                    role=role,
                )
            )
        return plans

    # -- forums ------------------------------------------------------------------------------

    def core_groups(self) -> Iterator[Row]:
        yield from GROUPS

    def core_members(self) -> Iterator[Row]:
        rng = self.rng("core_members")
        emails: list[str] = []
        upper_email = "Bob.Miller@Example.COM"
        for plan in self.members:
            mid, role = plan.member_id, plan.role
            name, email = self._member_name_and_email(rng, plan)
            if role == "email_case_upper":
                email = upper_email
            elif role == "email_case_spaced":
                email = " " + upper_email.lower()
            elif role == "blank_email" or rng.random() < 0.01:
                email = ""
            elif emails and rng.random() < 0.006:
                # A second account re-using an earlier email, typed differently.
                other = rng.choice(emails)
                email = rng.choice((other.upper(), f" {other}", f"{other} ", other.capitalize()))
            if email:
                emails.append(email.strip())
            group = 3
            roll = rng.random()
            if mid == 1:
                group = 4
            elif plan.scripter:
                group = 13 if roll < 0.2 else 7
            elif roll < 0.05:
                group = 12
            elif roll < 0.06:
                group = 5
            elif roll < 0.065:
                group = 6
            elif roll < 0.07:
                group = 8
            elif roll < 0.075:
                group = DELETED_GROUP_ID
            if role == "deleted_group":
                group = DELETED_GROUP_ID
            others = ""
            if role == "comma_groups":
                others = ",7,12,"
            elif rng.random() < 0.08:
                picks = sorted(rng.sample((7, 8, 10, 12, 14), rng.randint(1, 2)))
                others = "," + ",".join(str(g) for g in picks) + ","
            elif rng.random() < 0.01:
                others = rng.choice(("12", ",,12", "7,", ",10,,"))
            if plan.deleted_at is not None:
                continue  # planned, referenced by other tables, but deleted before the snapshot
            temp_ban = 0
            if role == "ban_permanent" or (role is None and rng.random() < 0.004):
                temp_ban = -1
            elif role == "ban_future" or (role is None and rng.random() < 0.003):
                temp_ban = WORLD_NOW + rng.randint(1, 90) * DAY
            elif role == "ban_past" or (role is None and rng.random() < 0.01):
                temp_ban = plan.joined + rng.randint(1, 300) * DAY
            joined = 0 if role == "joined_unknown" or rng.random() < 0.01 else plan.joined
            last_visit = 0 if rng.random() < 0.05 else rng.randint(plan.joined, WORLD_NOW)
            flags = 1 if rng.random() < 0.8 else 0
            if role == "flag_2":
                flags = 2
            elif role == "flag_127":
                flags = 127
            elif role == "flag_minus_1":
                flags = -1
            bday_day: int | None = None
            bday_month: int | None = None
            bday_year: int | None = None
            if rng.random() < 0.4:
                bday_day = rng.choice((0, rng.randint(1, 28), rng.randint(1, 28)))
                bday_month = rng.choice((None, rng.randint(1, 12), rng.randint(1, 12)))
                bday_year = rng.choice((None, 0, rng.randint(1975, 2008)))
            yield (
                mid,
                name,
                email,
                joined,
                group,
                others,
                self._pass_hash(rng),
                SECRET_CANARY + self._token(rng, 12),
                temp_ban,
                int(rng.paretovariate(1.1)) - 1 if rng.random() < 0.7 else 0,
                last_visit,
                bday_day,
                bday_month,
                bday_year,
                rng.choice(TIMEZONES),
                flags,
            )

    def _member_name_and_email(self, rng: random.Random, plan: MemberPlan) -> tuple[str, str]:
        role = plan.role
        first = rng.choice(FIRST_NAMES)
        handle = rng.choice(HANDLE_WORDS) + rng.choice(HANDLE_SUFFIXES)
        if rng.random() < 0.3:
            handle = f"{handle}{rng.randint(1, 999)}"
        text = handle
        non_ascii = role in ("mojibake_buyer", "latin1_name", "emoji_name") or rng.random() < 0.04
        if non_ascii:
            if role == "mojibake_buyer":
                text = "José"
            elif role == "latin1_name":
                text = "Café"
            elif role == "emoji_name":
                text = "Rune🔥Lord"
            elif plan.joined >= UTF8_SWITCH and rng.random() < 0.3:
                text = rng.choice(UTF8_ONLY_NAMES)
            else:
                text = rng.choice(ACCENTED_NAMES)
            if role is None:
                text = f"{text}{rng.randint(1, 99)}"
        # Before mid-2014 the forum wrote names as real latin1; afterwards it sent UTF-8 bytes
        # into the same latin1 column (mojibake when read as latin1).
        try:
            name = (
                text.encode("latin-1").decode("latin-1") if plan.joined < UTF8_SWITCH else u8(text)
            )
        except UnicodeEncodeError:
            name = u8(text)
        local = _ascii_handle(handle if not non_ascii else first).lower()
        if rng.random() < 0.5:
            local = f"{first}.{local}"
        email = f"{local}{rng.randint(1, 9999)}@{rng.choice(EMAIL_DOMAINS)}"
        if rng.random() < 0.05:
            email = email.capitalize()
        return name, email

    def _token(self, rng: random.Random, length: int) -> str:
        raw = rng.getrandbits(8 * 48).to_bytes(48, "big")
        return base64.b64encode(raw).translate(BCRYPT_ALPHABET).decode()[:length]

    def _pass_hash(self, rng: random.Random) -> str:
        # 60 characters like a real bcrypt hash; the canary lets tests prove it never leaks.
        return "$2y$10$" + SECRET_CANARY + self._token(rng, 60 - 7 - len(SECRET_CANARY))

    def core_pfields_content(self) -> Iterator[Row]:
        rng = self.rng("core_pfields_content")
        new_discord = wall_seconds(2023, 6, 1)
        for plan in self.members:
            if plan.deleted_at is not None or rng.random() >= 0.85:
                continue
            rsn = (
                None
                if rng.random() < 0.2
                else u8(f"{rng.choice(HANDLE_WORDS)} {rng.randint(1, 9999)}")
            )
            discord: str | None = None
            if rng.random() < 0.7:
                base = (
                    rng.choice(HANDLE_WORDS).lower()
                    + rng.choice(("", "_", "."))
                    + rng.choice(FIRST_NAMES)
                )
                if rng.random() < 0.03:
                    base += rng.choice(EMOJI_IN_NAMES)
                old_style = plan.joined < new_discord and rng.random() < 0.8
                discord = u8(f"{base}#{rng.randint(1, 9999):04d}" if old_style else base)
            site = (
                None
                if rng.random() < 0.9
                else f"https://{_ascii_handle(rng.choice(HANDLE_WORDS)).lower()}.example.com"
            )
            yield (plan.member_id, rsn, discord, site)

    # -- repo: scripts, versions, compile history --------------------------------------------

    def scripts_rows(self) -> Iterator[Row]:
        rng = self.rng("scripts")
        names_used: set[str] = set()
        slugs_used: set[str] = set()
        originals: list[tuple[str, str]] = []
        # SCRIPT_ROLES lists the original before the variant and roles go to ids in order.
        case_source: tuple[str, str] | None = None
        for plan in self.scripts:
            role = plan.role
            activity = rng.choice(SCRIPT_ACTIVITIES)
            name = f"{rng.choice(SCRIPT_PREFIXES)} {activity}{rng.choice(SCRIPT_SUFFIXES)}"
            while name in names_used:
                name = f"{rng.choice(SCRIPT_PREFIXES)} {activity} {rng.randint(2, 99)}"
            if role == "mojibake_name":
                name = rng.choice(NON_ASCII_SCRIPT_NAMES)
            names_used.add(name)
            slug = "-".join(_ascii_handle(part).lower() for part in name.split())
            if slug.lower() in slugs_used:
                slug = f"{slug}-{plan.script_id}"
            if role == "slug_case_variant" and case_source is not None:
                # A re-upload by another scripter: same name, slug typed in another case.
                name, slug = case_source[0], case_source[1].upper()
            elif role is None and originals and rng.random() < 0.01:
                name, slug = rng.choice(originals)
                slug = slug.title()
            else:
                originals.append((name, slug))
            slugs_used.add(slug.lower())
            if role == "slug_case_original":
                case_source = (name, slug)
            plan.slug = slug
            if plan.created >= UTF8_SWITCH or role == "mojibake_name":
                stored_name = u8(name)
            else:
                stored_name = name.encode("latin-1", "replace").decode("latin-1")
            category = CATEGORY_BY_ACTIVITY.get(
                activity, rng.choice(("skilling", "skilling", "other"))
            )
            if role == "empty_category" or (role is None and rng.random() < 0.02):
                category = ""
            picked = set(rng.sample(SCRIPT_TAGS, rng.choice((0, 1, 2, 2, 3, 4))))
            tags = ",".join(t for t in SCRIPT_TAGS if t in picked)
            if role == "no_tags":
                tags = ""
            elif not tags:
                tags = "p2p,aio" if rng.random() < 0.5 else ""
            status = rng.choices(
                ("approved", "pending", "rejected", "retired", ""), (75, 8, 5, 10, 2)
            )[0]
            if role == "empty_status":
                status = ""
            elif plan.deleted_at is not None or plan.premium:
                status = "approved"
            is_premium = (2 if role == "premium_flag_2" else 1) if plan.premium else 0
            price = (
                None
                if plan.monthly_cents is None
                else f"{plan.monthly_cents // 100}.{plan.monthly_cents % 100:02d}"
            )
            description = self._description(rng, plan, name)
            settings = self._settings_blob(rng, plan)
            created = (
                ZERO_DATETIME
                if role == "zero_created" or rng.random() < 0.03
                else self.fmt(utc_to_wall(plan.created))
            )
            updated = rng.randint(plan.created, min(plan.gone, WORLD_NOW))
            if plan.deleted_at is not None:
                continue
            yield (
                plan.script_id,
                plan.author_id,
                stored_name,
                slug,
                category,
                tags,
                status,
                is_premium,
                price,
                description,
                settings,
                int(plan.popularity * 40) if plan.premium else int(plan.popularity * 300),
                created,
                self.fmt(updated),
            )

    def _description(self, rng: random.Random, plan: ScriptPlan, name: str) -> str | None:
        if rng.random() < 0.05:
            return None
        if plan.role == "latin1_description" or (plan.created < UTF8_SWITCH and rng.random() < 0.3):
            extra = rng.choice(DESCRIPTION_EXTRAS_LATIN1)
            return f"<p><b>{name}</b> {extra}.</p><p>Start anywhere near a bank.</p>".encode(
                "latin-1", "replace"
            ).decode("latin-1")
        extra = rng.choice(DESCRIPTION_EXTRAS_UTF8)
        return u8(f"<p><b>{name}</b>: {extra}.</p>\n<ul><li>GUI</li><li>Antiban</li></ul>")

    def _settings_blob(self, rng: random.Random, plan: ScriptPlan) -> str | None:
        if plan.role is None and rng.random() < 0.1:
            return None
        value: dict[str, PhpValue] = {
            "gui": rng.random() < 0.7,
            "delay": rng.choice((300, 600, 750, 1200)),
            "food": [
                rng.choice(("Lobster", "Shark", "Monkfish", "Karambwan"))
                for _ in range(rng.randint(0, 3))
            ],
            "antiban": {
                "afk_chance": round(rng.uniform(0, 0.2), 3),
                "mouse_speed": rng.randint(80, 160),
            },
            "greeting": rng.choice(("Bonne journée ☕", "Grüße", "hello", "頑張って", "")),
        }
        blob = php_serialize(value)
        if plan.role in ("truncated_settings", "truncated_settings_2") or (
            plan.role is None and rng.random() < 0.02
        ):
            # The old repo cut blobs at a VARCHAR(255)-era limit or mid-write: unparseable.
            blob = blob[: rng.randint(len(blob) // 3, len(blob) - 3)]
            # A cut right after an inner '}' would look complete to a naive LIKE '%}' check.
            blob = blob.rstrip(b"}")
        return blob.decode("latin-1")

    def script_versions(self) -> Iterator[Row]:
        rng = self.rng("script_versions")
        drafts: list[tuple[int, int, int, str]] = []  # (uploaded, script_id, index, version)
        for plan in self.scripts:
            if plan.deleted_at is not None:
                continue
            n = 1 + min(int(rng.expovariate(1 / 3)), 11)
            style = rng.choice(("semver", "semver", "v", "dotted"))
            times = sorted(rng.randint(plan.created, WORLD_NOW - DAY) for _ in range(n))
            for index, uploaded in enumerate(times):
                if style == "v":
                    version = f"v{index + 1}"
                elif style == "dotted":
                    version = f"1.0.{index}" if index else "1.0"
                else:
                    version = f"{1 + index // 4}.{index % 4}"
                if rng.random() < 0.08:
                    version += rng.choice(("-beta", "-rc1", "b"))
                drafts.append((uploaded, plan.script_id, index, version))
        drafts.sort()
        huge = set(rng.sample(range(len(drafts)), min(HUGE_COMPILE_LOGS, len(drafts))))
        others = [i for i in range(len(drafts)) if i not in huge]
        blank = set(rng.sample(others, min(2, len(others))))
        for position, (uploaded, script_id, _index, version) in enumerate(drafts):
            vid = position + 1
            slug = self.scripts[script_id - 1].slug
            recent = uploaded > WORLD_NOW - 20 * DAY
            status = rng.choices(("compiled", "failed", "queued", "pending"), (85, 10, 3, 2))[0]
            if recent and rng.random() < 0.5:
                status = rng.choice(("queued", "pending"))
            if position in blank:
                status = ""
            if position in huge:
                status = "failed"
            compiled_at = uploaded + rng.randint(20, 900) if status in ("compiled", "failed") else 0
            log: str | None = None
            if position in huge:
                log = self._huge_log(rng, slug, version)
            elif status == "compiled":
                log = "\n".join(COMPILE_OK_LINES)
            elif status == "failed":
                log = "\n".join(rng.sample(COMPILE_ERROR_LINES, 2))
            changelog = None
            if rng.random() < 0.85:
                changelog = u8(
                    "\n".join(
                        f"- {line}" for line in rng.sample(CHANGELOG_LINES, rng.randint(1, 4))
                    )
                )
            self._versions.ids.append(vid)
            self._versions.statuses.append(status)
            self._versions.uploaded.append(uploaded)
            self._versions.compiled.append(compiled_at)
            yield (
                vid,
                script_id,
                version,
                changelog,
                f"/var/repo/uploads/{slug}/{version}/source.zip",
                f"/var/repo/artifacts/{slug}/{version}/script.jar"
                if status == "compiled"
                else None,
                status,
                log,
                uploaded,
                compiled_at,
            )

    def _huge_log(self, rng: random.Random, slug: str, version: str) -> str:
        """A compile log of 2-4 MB: a runaway annotation processor printing a warning per class."""
        target = rng.randint(2_000_000, 4_000_000)
        lines: list[str] = [f"Compiling {slug} {version}"]
        size = 0
        i = 0
        while size < target:
            line = (
                f"warning: [deprecation] Timing.waitCondition(Condition,long) in org.tribot.api "
                f"has been deprecated at src/{slug}/tasks/Task{i % 977}.java:"
                f"{(i * 7919) % 4000 + 1}"
            )
            lines.append(line)
            size += len(line) + 1
            i += 1
        lines.append("error: too many warnings; compilation aborted\nBUILD FAILED")
        return "\n".join(lines)

    def compile_jobs(self) -> Iterator[Row]:
        rng = self.rng("compile_jobs")
        job_id = 0
        v = self._versions
        pending_left = 2
        for vid, status, uploaded, compiled in zip(
            v.ids, v.statuses, v.uploaded, v.compiled, strict=True
        ):
            attempts: list[tuple[str, int | None, int | None, str | None]] = []
            if status in ("compiled", "failed"):
                if rng.random() < 0.1:
                    attempts.append(
                        (
                            "failed",
                            uploaded + 5,
                            uploaded + 15,
                            "worker lost: java.lang.OutOfMemoryError",
                        )
                    )
                attempts.append(
                    (
                        "done" if status == "compiled" else "failed",
                        compiled - rng.randint(5, 19),
                        compiled,
                        None if status == "compiled" else "javac exited with status 1",
                    )
                )
            elif status == "pending" or (pending_left > 0 and status in ("queued", "")):
                # Claimed by a worker that died: abandoned, never finished.
                attempts.append(("pending", uploaded + rng.randint(5, 60), None, None))
                pending_left -= 1
            else:
                attempts.append(("queued", None, None, None))
            for state, claimed, finished, error in attempts:
                job_id += 1
                yield (
                    job_id,
                    vid,
                    state,
                    None if claimed is None else self.fmt(utc_to_wall(claimed)),
                    None if finished is None else self.fmt(utc_to_wall(finished)),
                    error,
                )

    # -- repo: licenses and the rest ---------------------------------------------------------

    def licenses(self) -> Iterator[Row]:
        drafts = self._license_drafts()
        drafts.sort(key=lambda d: (d.created, d.cart, d.script_id))
        rng = self.rng("licenses-orders")
        fmt = self.fmt
        prices: dict[tuple[int, str], str] = {}
        order_for_cart: dict[int, int] = {}
        next_order = FIRST_ORDER_ID
        next_big_order = ABOVE_2_53_ORDER_ID
        line_id = FIRST_LINE_ID
        for lid, d in enumerate(drafts, start=1):
            order_id: int | None = None
            line: int | None = None
            price = "0.00"
            if d.kind in ("monthly", "lifetime") and d.created >= STORE_OPENED:
                order_id = order_for_cart.get(d.cart)
                if order_id is None:
                    if d.created >= ABOVE_2_53_SINCE:
                        next_big_order += rng.randint(1_000, 90_000)
                        order_id = next_big_order
                    else:
                        next_order += rng.randint(1_000, 90_000)
                        order_id = next_order
                    order_for_cart[d.cart] = order_id
                line_id += rng.randint(1, 5_000)
                line = line_id
                currency = currency_for_order(order_id, self.seed)
                key = (d.usd_cents, currency)
                price = prices.get(key) or prices.setdefault(
                    key, str(price_in_currency(Decimal(d.usd_cents) / 100, currency))
                )
            elif d.usd_cents:
                # Licenses sold before the Shopify store (PayPal era) carry a USD price, no order.
                price = f"{d.usd_cents // 100}.{d.usd_cents % 100:02d}"
            starts = fmt(d.starts)
            yield (
                lid,
                d.member_id,
                d.script_id,
                d.kind,
                starts,
                ZERO_DATETIME if d.expires is None else fmt(d.expires),
                order_id,
                line,
                price,
                d.refunded,
                starts,
                fmt(d.updated),
            )

    def _license_drafts(self) -> list[LicenseDraft]:
        rng = self.rng("licenses")
        sellable = [s for s in self.scripts if s.premium and s.monthly_cents is not None]
        members = self.members
        member_weights = list(accumulate(rng.paretovariate(1.3) for _ in members))
        script_weights = list(accumulate(s.popularity for s in sellable))
        drafts: list[LicenseDraft] = []
        cart = 0

        def subscription(
            member: MemberPlan, script: ScriptPlan, start_wall: int, months: int
        ) -> None:
            nonlocal cart
            end = min(member.gone, script.gone, WORLD_NOW)
            price = script.monthly_cents or 0
            for i in range(months):
                starts = add_months(start_wall, i)
                created = wall_to_utc(starts)
                if created >= end:
                    break
                cart += 1
                refunded = 1 if rng.random() < 0.02 else 0
                updated = created + (rng.randint(1, 14) * DAY if refunded else rng.randint(0, 120))
                drafts.append(
                    LicenseDraft(
                        created,
                        cart,
                        member.member_id,
                        script.script_id,
                        "monthly",
                        starts,
                        add_months(start_wall, i + 1),
                        price,
                        refunded,
                        min(updated, WORLD_NOW),
                    )
                )

        def single(
            member: MemberPlan, scripts: Sequence[ScriptPlan], created: int, kind: str
        ) -> None:
            nonlocal cart
            cart += 1
            starts = utc_to_wall(created)
            for script in scripts:
                expires: int | None = None
                cents = 0
                if kind == "lifetime":
                    cents = int(lifetime_price_usd(Decimal(script.monthly_cents or 0) / 100) * 100)
                elif kind == "monthly":
                    cents = script.monthly_cents or 0
                    expires = add_months(starts, 1)
                elif kind == "trial":
                    expires = starts + 7 * DAY
                elif kind == "staff" and rng.random() < 0.3:
                    expires = add_months(starts, 12)
                refunded = 1 if cents and rng.random() < 0.03 else 0
                updated = created + (rng.randint(1, 14) * DAY if refunded else rng.randint(0, 120))
                drafts.append(
                    LicenseDraft(
                        created,
                        cart,
                        member.member_id,
                        script.script_id,
                        kind,
                        starts,
                        expires,
                        cents,
                        refunded,
                        min(updated, WORLD_NOW),
                    )
                )

        def window(member: MemberPlan, script: ScriptPlan) -> tuple[int, int]:
            return max(member.joined, script.created) + HOUR, min(
                member.gone, script.gone, WORLD_NOW
            ) - HOUR

        # The cast first: their rows are ordinary licenses that happen to sit on a quirk.
        alive_by_age = sorted(
            (s for s in sellable if s.deleted_at is None), key=lambda s: s.created
        )
        roles = self.member_roles

        def open_windows(
            member: MemberPlan, scripts: Sequence[ScriptPlan]
        ) -> list[tuple[ScriptPlan, int, int]]:
            found = [(script, *window(member, script)) for script in scripts]
            return [(script, lo, hi) for script, lo, hi in found if lo + DAY < hi]

        buyer_roles: tuple[MemberRole, ...] = ("mojibake_buyer", "deleted_buyer")
        for role in buyer_roles:
            member = roles[role]
            choices = open_windows(member, alive_by_age)
            for script, lo, hi in choices[:2]:
                single(member, [script], rng.randint(lo, hi), "lifetime")
            for script, lo, hi in choices[2:3]:
                subscription(member, script, utc_to_wall(rng.randint(lo, (lo + hi) // 2)), 3)
        deleted_script = self.script_roles["deleted_premium"]
        buyers = [m for m in members if m.deleted_at is None]
        sold = 0
        for member in rng.sample(buyers, min(len(buyers), 40)):
            for _script, lo, hi in open_windows(member, [deleted_script])[:1]:
                if sold < 5:
                    single(member, [deleted_script], rng.randint(lo, hi), "lifetime")
                    sold += 1
        dst_roles: tuple[tuple[MemberRole, tuple[int, int, int, int, int]], ...] = (
            ("dst_fall_buyer", DST_FALL_BACK_START),
            ("dst_spring_buyer", DST_SPRING_FORWARD_START),
        )
        for role, start in dst_roles:
            subscription(roles[role], alive_by_age[0], wall_seconds(*start), 4)

        attempts = 0
        while len(drafts) < self.n_licenses and attempts < self.n_licenses * 20:
            attempts += 1
            member = rng.choices(members, cum_weights=member_weights)[0]
            script = rng.choices(sellable, cum_weights=script_weights)[0]
            lo, hi = window(member, script)
            if lo >= hi:
                continue
            created = rng.randint(lo, hi)
            roll = rng.random()
            if roll < 0.5:
                months = 1 + min(int(rng.expovariate(1 / 5)), 36)
                subscription(member, script, utc_to_wall(created), months)
            elif roll < 0.75:
                single(member, [script], created, "lifetime")
            elif roll < 0.8:
                cart_scripts = {script.script_id: script}
                for extra in rng.choices(sellable, cum_weights=script_weights, k=2):
                    if extra.created < created < extra.gone:
                        cart_scripts[extra.script_id] = extra
                single(
                    member,
                    list(cart_scripts.values()),
                    created,
                    rng.choice(("lifetime", "monthly")),
                )
            elif roll < 0.93:
                single(member, [script], created, "trial")
            else:
                single(member, [script], created, "staff")
        return drafts

    def instance_packs(self) -> Iterator[Row]:
        rng = self.rng("instance_packs")
        alive = [m for m in self.members if m.deleted_at is None]
        fmt = self.fmt
        for pid in range(1, self.n_packs + 1):
            member = rng.choice(alive)
            start = utc_to_wall(rng.randint(max(member.joined, STORE_OPENED), WORLD_NOW - HOUR))
            source = rng.choices(
                ("store", "staff", "promo", "STORE ", "Store", " staff"), (80, 9, 6, 3, 1, 1)
            )[0]
            slots = rng.choice((1, 2, 5, 5, 10, 10, 25, 50, 100))
            if pid == 1:
                source = "STORE "
            if pid == 2 or (source.strip() == "staff" and rng.random() < 0.4):
                source, slots = "staff", -rng.choice((1, 5, 10))
            if source.strip().lower() == "store":
                expires = add_months(start, 1)
            elif source == "promo":
                expires = start + 7 * DAY
            else:
                expires = add_months(start, 12)
            yield (pid, member.member_id, slots, fmt(start), fmt(expires), source)

    def script_reviews(self) -> Iterator[Row]:
        rng = self.rng("script_reviews")
        seen: set[tuple[int, int]] = set()
        members = self.members
        weights = list(accumulate(s.popularity for s in self.scripts))
        deleted_buyer = self.member_roles["deleted_buyer"]
        deleted_script = self.script_roles["deleted_premium"]
        alive_scripts = [s for s in self.scripts if s.deleted_at is None]
        founder = members[0]  # joined first and never deleted: every window is open for them
        forced: list[tuple[MemberPlan, ScriptPlan, int | None]] = [
            (deleted_buyer, alive_scripts[0], 4),
            (founder, deleted_script, 5),
            (founder, alive_scripts[1], 0),
            (founder, alive_scripts[2], 6),
        ]
        rid = 0
        attempts = 0
        while rid < self.n_reviews and attempts < self.n_reviews * 20:
            attempts += 1
            if forced:
                member, script, rating = forced.pop(0)
            else:
                member = rng.choice(members)
                script = rng.choices(self.scripts, cum_weights=weights)[0]
                rating = None
            key = (script.script_id, member.member_id)
            lo = max(member.joined, script.created) + HOUR
            hi = min(member.gone, script.gone, WORLD_NOW) - HOUR
            if key in seen or lo >= hi:
                continue
            seen.add(key)
            if rating is None:
                rating = rng.choices((5, 4, 3, 2, 1, 0, 6), (45, 25, 12, 6, 8, 2, 2))[0]
            body = None if rng.random() < 0.1 else u8(rng.choice(REVIEW_BODIES))
            rid += 1
            yield (
                rid,
                script.script_id,
                member.member_id,
                rating,
                body,
                self.fmt(utc_to_wall(rng.randint(lo, hi))),
            )

    def auth0_links(self) -> Iterator[Row]:
        rng = self.rng("auth0_links")
        auth0_era = wall_to_utc(wall_seconds(2019, 3, 1))
        seen: set[str] = set()
        for plan in self.members:
            if plan.deleted_at is not None or rng.random() >= 0.7:
                continue
            if rng.random() < 0.75:
                sub = f"auth0|{rng.getrandbits(96):024x}"
            else:
                sub = f"google-oauth2|{rng.randint(10**20, 10**21 - 1)}"
            if sub in seen:
                continue
            seen.add(sub)
            linked = rng.randint(max(plan.joined, auth0_era), WORLD_NOW - HOUR)
            linked_at = ZERO_DATETIME if rng.random() < 0.01 else self.fmt(utc_to_wall(linked))
            yield (plan.member_id, sub, linked_at)

    def api_sessions(self) -> Iterator[Row]:
        rng = self.rng("api_sessions")
        alive = [m for m in self.members if m.deleted_at is None]
        for _ in range(self.n_sessions):
            member = rng.choice(alive)
            issued = WORLD_NOW - rng.randint(60, 7 * DAY)
            token = SECRET_CANARY + f"{rng.getrandbits(256):064x}"[: 64 - len(SECRET_CANARY)]
            yield (
                token,
                member.member_id,
                self.fmt(utc_to_wall(issued)),
                self.fmt(utc_to_wall(issued + 7 * DAY)),
            )


@dataclass(frozen=True)
class LegacyTableSpec:
    """One table the generator fills: where it lives, its columns, where its rows come from."""

    database: str  # "tribot_forums" or "tribot_repo", before renaming
    table: str
    columns: tuple[str, ...]
    rows: Callable[[LegacyWorldGenerator], Iterator[Row]]


TABLE_SPECS: tuple[LegacyTableSpec, ...] = (
    LegacyTableSpec(
        "tribot_forums",
        "core_groups",
        ("g_id", "g_title", "g_is_staff", "g_icon"),
        LegacyWorldGenerator.core_groups,
    ),
    LegacyTableSpec(
        "tribot_forums",
        "core_members",
        (
            "member_id",
            "name",
            "email",
            "joined",
            "member_group_id",
            "mgroup_others",
            "members_pass_hash",
            "members_pass_salt",
            "temp_ban",
            "member_posts",
            "last_visit",
            "bday_day",
            "bday_month",
            "bday_year",
            "timezone",
            "allow_admin_mails",
        ),
        LegacyWorldGenerator.core_members,
    ),
    LegacyTableSpec(
        "tribot_forums",
        "core_pfields_content",
        ("member_id", "field_1", "field_2", "field_3"),
        LegacyWorldGenerator.core_pfields_content,
    ),
    LegacyTableSpec(
        "tribot_repo",
        "scripts",
        (
            "id",
            "author_id",
            "name",
            "slug",
            "category",
            "tags",
            "status",
            "is_premium",
            "monthly_price",
            "description",
            "settings",
            "total_users",
            "created_at",
            "updated_at",
        ),
        LegacyWorldGenerator.scripts_rows,
    ),
    LegacyTableSpec(
        "tribot_repo",
        "script_versions",
        (
            "id",
            "script_id",
            "version",
            "changelog",
            "source_path",
            "artifact_path",
            "compile_status",
            "compile_log",
            "uploaded_at",
            "compiled_at",
        ),
        LegacyWorldGenerator.script_versions,
    ),
    LegacyTableSpec(
        "tribot_repo",
        "compile_jobs",
        ("id", "version_id", "state", "claimed_at", "finished_at", "error"),
        LegacyWorldGenerator.compile_jobs,
    ),
    LegacyTableSpec(
        "tribot_repo",
        "licenses",
        (
            "id",
            "member_id",
            "script_id",
            "kind",
            "starts_at",
            "expires_at",
            "shopify_order_id",
            "shopify_line_id",
            "price_paid",
            "refunded",
            "created_at",
            "updated_at",
        ),
        LegacyWorldGenerator.licenses,
    ),
    LegacyTableSpec(
        "tribot_repo",
        "instance_packs",
        ("id", "member_id", "slots", "starts_at", "expires_at", "source"),
        LegacyWorldGenerator.instance_packs,
    ),
    LegacyTableSpec(
        "tribot_repo",
        "script_reviews",
        ("id", "script_id", "member_id", "rating", "body", "created_at"),
        LegacyWorldGenerator.script_reviews,
    ),
    LegacyTableSpec(
        "tribot_repo",
        "auth0_links",
        ("member_id", "auth0_sub", "linked_at"),
        LegacyWorldGenerator.auth0_links,
    ),
    LegacyTableSpec(
        "tribot_repo",
        "api_sessions",
        ("token", "member_id", "issued_at", "expires_at"),
        LegacyWorldGenerator.api_sessions,
    ),
)
"""Tables in generation order: versions before compile_jobs (jobs follow their versions)."""
