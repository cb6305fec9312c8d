"""rune target schema: roles, accounts, scripts and their versions, compile jobs, licenses,
instance allowances, reviews, and the store (products, prices, orders, items, payments, refunds).

Every id is a uuid. The migration computes ids deterministically (uuid5 of the legacy key),
so rows it writes carry their own id; ``gen_random_uuid()`` (built in since PostgreSQL 13)
is the default only for rows Rune creates itself. ``legacy_*`` / ``shopify_*`` columns record
where a row came from and are UNIQUE, so replaying a source row can only update its one copy.

Foreign keys are NO ACTION unless noted: a legacy delete replayed by sync must decide what
happens to children (quarantine, exclude) rather than have the database cascade silently.
The two exceptions: a deleted author leaves the script (author becomes NULL), and order
items live and die with their order.

Revision ID: 0002_rune_core
Revises: 0001_control
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0002_rune_core"
down_revision: str | None = "0001_control"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "rune"
NOW = sa.text("now()")
TZ = sa.TIMESTAMP(timezone=True)

SCRIPT_CATEGORIES = ("combat", "skilling", "money_making", "minigames", "questing", "other")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> sa.Column[object]:
    return sa.Column(
        "id", pg.UUID(as_uuid=True), nullable=False, server_default=sa.text("gen_random_uuid()")
    )


def _pk(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=f"pk_{table}")


def _fk(
    table: str, column: str, target: str, *, ondelete: str | None = None
) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{SCHEMA}.{target}.id"], name=f"fk_{table}_{column}", ondelete=ondelete
    )


def _unique(table: str, *columns: str) -> sa.UniqueConstraint:
    return sa.UniqueConstraint(*columns, name=f"uq_{table}_{'_'.join(columns)}")


def _check(table: str, name: str, sql: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(sql, name=f"ck_{table}_{name}")


def _currency(table: str, column: str) -> sa.CheckConstraint:
    return _check(table, column, f"{column} ~ '^[A-Z]{{3}}$'")


def _non_negative(table: str, *columns: str) -> list[sa.CheckConstraint]:
    return [_check(table, column, f"{column} >= 0") for column in columns]


def _index(table: str, *columns: str) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns), schema=SCHEMA)


def _text_array(name: str) -> sa.Column[object]:
    return sa.Column(
        name, pg.ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'::text[]")
    )


def upgrade() -> None:
    op.execute(sa.text(f'CREATE SCHEMA "{SCHEMA}"'))

    op.create_table(
        "roles",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("is_staff", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name="pk_roles"),
        _unique("roles", "key"),
        _check("roles", "key_format", "key ~ '^[a-z][a-z0-9_]*$'"),
        schema=SCHEMA,
    )

    op.create_table(
        "accounts",
        _id(),
        sa.Column("legacy_member_id", sa.Integer(), nullable=True),
        sa.Column("shopify_customer_id", sa.BigInteger(), nullable=True),
        sa.Column("auth0_sub", sa.Text(), nullable=True),
        sa.Column("auth0_linked_at", TZ, nullable=True),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("can_login", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("primary_role_id", sa.SmallInteger(), nullable=True),
        sa.Column(
            "secondary_role_ids",
            pg.ARRAY(sa.SmallInteger()),
            nullable=False,
            server_default=sa.text("'{}'::smallint[]"),
        ),
        sa.Column("ban_state", sa.Text(), nullable=False, server_default="none"),
        sa.Column("banned_until", TZ, nullable=True),
        sa.Column("joined_at", TZ, nullable=True),
        sa.Column("last_seen_at", TZ, nullable=True),
        sa.Column("post_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("birthday_day", sa.SmallInteger(), nullable=True),
        sa.Column("birthday_month", sa.SmallInteger(), nullable=True),
        sa.Column("birthday_year", sa.SmallInteger(), nullable=True),
        sa.Column("timezone", sa.Text(), nullable=True),
        sa.Column("accepts_admin_email", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("profile", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", TZ, nullable=False, server_default=NOW),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        _pk("accounts"),
        _unique("accounts", "legacy_member_id"),
        _unique("accounts", "shopify_customer_id"),
        _unique("accounts", "auth0_sub"),
        _fk("accounts", "primary_role_id", "roles"),
        _check("accounts", "ban_state", _in("ban_state", ("none", "temporary", "permanent"))),
        # Only a temporary ban has an end; 'permanent' and 'none' must not carry a stale date.
        _check(
            "accounts", "banned_until", "(ban_state = 'temporary') = (banned_until IS NOT NULL)"
        ),
        _check("accounts", "post_count", "post_count >= 0"),
        _check("accounts", "birthday_day", "birthday_day BETWEEN 1 AND 31"),
        _check("accounts", "birthday_month", "birthday_month BETWEEN 1 AND 12"),
        # Stored normalised, so equality on email is the case-insensitive match Shopify needs.
        _check("accounts", "email_normalised", "email = lower(btrim(email)) AND email <> ''"),
        _check("accounts", "auth0_linked_at", "auth0_linked_at IS NULL OR auth0_sub IS NOT NULL"),
        _check(
            "accounts",
            "secondary_role_ids_no_nulls",
            "array_position(secondary_role_ids, NULL) IS NULL",
        ),
        _check("accounts", "profile_object", "jsonb_typeof(profile) = 'object'"),
        schema=SCHEMA,
    )
    # Accounts that lost a case-insensitive email tie are kept with can_login = false and may
    # share the address; among accounts that can log in an email is unique.
    op.create_index(
        "uq_accounts_login_email",
        "accounts",
        [sa.text("lower(email)")],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("can_login AND email IS NOT NULL"),
    )
    _index("accounts", "email")

    op.create_table(
        "scripts",
        _id(),
        sa.Column("legacy_script_id", sa.Integer(), nullable=True),
        sa.Column("author_account_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=True),
        _text_array("tags"),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("is_premium", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("monthly_price_minor", sa.Integer(), nullable=True),
        sa.Column("price_currency", sa.CHAR(3), nullable=True),
        sa.Column("description_html", sa.Text(), nullable=True),
        sa.Column("settings", pg.JSONB(), nullable=True),
        sa.Column("total_users", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", TZ, nullable=True),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        _pk("scripts"),
        _unique("scripts", "legacy_script_id"),
        _fk("scripts", "author_account_id", "accounts", ondelete="SET NULL"),
        _check("scripts", "slug_not_blank", "btrim(slug) <> ''"),
        _check("scripts", "category", _in("category", SCRIPT_CATEGORIES)),
        _check("scripts", "status", _in("status", ("pending", "approved", "rejected", "retired"))),
        _check("scripts", "monthly_price_minor", "monthly_price_minor >= 0"),
        _currency("scripts", "price_currency"),
        _check(
            "scripts",
            "price_has_currency",
            "monthly_price_minor IS NULL OR price_currency IS NOT NULL",
        ),
        _check("scripts", "total_users", "total_users >= 0"),
        _check("scripts", "tags_no_nulls", "array_position(tags, NULL) IS NULL"),
        schema=SCHEMA,
    )
    op.create_index(
        "uq_scripts_slug_ci", "scripts", [sa.text("lower(slug)")], unique=True, schema=SCHEMA
    )
    _index("scripts", "author_account_id")

    op.create_table(
        "script_versions",
        _id(),
        sa.Column("legacy_version_id", sa.Integer(), nullable=True),
        sa.Column("script_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("changelog", sa.Text(), nullable=True),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("artifact_path", sa.Text(), nullable=True),
        sa.Column("compile_status", sa.Text(), nullable=True),
        sa.Column("compile_log", sa.Text(), nullable=True),
        sa.Column("uploaded_at", TZ, nullable=False),
        sa.Column("compiled_at", TZ, nullable=True),
        _pk("script_versions"),
        _unique("script_versions", "legacy_version_id"),
        _fk("script_versions", "script_id", "scripts"),
        _check(
            "script_versions",
            "compile_status",
            _in("compile_status", ("queued", "pending", "compiled", "failed")),
        ),
        schema=SCHEMA,
    )
    _index("script_versions", "script_id")

    op.create_table(
        "compile_jobs",
        _id(),
        sa.Column("legacy_job_id", sa.Integer(), nullable=True),
        sa.Column("script_version_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("claimed_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _pk("compile_jobs"),
        _unique("compile_jobs", "legacy_job_id"),
        _fk("compile_jobs", "script_version_id", "script_versions"),
        # No 'pending': legacy pending jobs are abandoned and excluded by a mapping rule.
        _check("compile_jobs", "state", _in("state", ("queued", "done", "failed"))),
        schema=SCHEMA,
    )
    _index("compile_jobs", "script_version_id")

    op.create_table(
        "products",
        _id(),
        sa.Column("shopify_product_id", sa.BigInteger(), nullable=True),
        sa.Column("script_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("handle", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=NOW),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        _pk("products"),
        _unique("products", "shopify_product_id"),
        _unique("products", "handle"),
        _fk("products", "script_id", "scripts"),
        _check("products", "kind", _in("kind", ("script", "instances", "other"))),
        _check("products", "status", _in("status", ("active", "draft", "archived"))),
        # A script product may have lost its script (retired/unknown); nothing else has one.
        _check("products", "script_only_for_script_kind", "script_id IS NULL OR kind = 'script'"),
        schema=SCHEMA,
    )
    _index("products", "script_id")

    op.create_table(
        "prices",
        _id(),
        sa.Column("product_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("shopify_variant_id", sa.BigInteger(), nullable=True),
        sa.Column("sku", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("billing_interval", sa.Text(), nullable=True),
        sa.Column("instance_slots", sa.Integer(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        _pk("prices"),
        _unique("prices", "shopify_variant_id"),
        _unique("prices", "sku"),
        _fk("prices", "product_id", "products"),
        _check("prices", "billing_interval", _in("billing_interval", ("month", "lifetime"))),
        _check("prices", "instance_slots", "instance_slots > 0"),
        *_non_negative("prices", "amount_minor"),
        _currency("prices", "currency"),
        schema=SCHEMA,
    )
    _index("prices", "product_id")

    op.create_table(
        "orders",
        _id(),
        sa.Column("shopify_order_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("account_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("presentment_currency", sa.CHAR(3), nullable=False),
        sa.Column("subtotal_minor", sa.BigInteger(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("shipping_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("tax_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("financial_status", sa.Text(), nullable=True),
        sa.Column("cancelled_at", TZ, nullable=True),
        sa.Column("placed_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        _text_array("discount_codes"),
        _pk("orders"),
        _unique("orders", "shopify_order_id"),
        _fk("orders", "account_id", "accounts"),
        _currency("orders", "currency"),
        _currency("orders", "presentment_currency"),
        *_non_negative("orders", "subtotal_minor", "discount_minor", "shipping_minor"),
        *_non_negative("orders", "tax_minor", "total_minor"),
        schema=SCHEMA,
    )
    _index("orders", "account_id")
    _index("orders", "placed_at")

    op.create_table(
        "order_items",
        _id(),
        sa.Column("order_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("shopify_line_id", sa.BigInteger(), nullable=True),
        sa.Column("price_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("script_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("sku", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        _pk("order_items"),
        _unique("order_items", "shopify_line_id"),
        _fk("order_items", "order_id", "orders", ondelete="CASCADE"),
        _fk("order_items", "price_id", "prices"),
        _fk("order_items", "script_id", "scripts"),
        _check("order_items", "quantity", "quantity > 0"),
        *_non_negative("order_items", "unit_price_minor", "discount_minor"),
        _currency("order_items", "currency"),
        schema=SCHEMA,
    )
    _index("order_items", "order_id")

    op.create_table(
        "payments",
        _id(),
        sa.Column("order_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("shopify_transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("gateway", sa.Text(), nullable=True),
        sa.Column("processed_at", TZ, nullable=False),
        _pk("payments"),
        _unique("payments", "shopify_transaction_id"),
        _fk("payments", "order_id", "orders"),
        _check(
            "payments",
            "kind",
            _in("kind", ("authorization", "capture", "sale", "void", "refund")),
        ),
        _check("payments", "status", _in("status", ("pending", "success", "failure", "error"))),
        *_non_negative("payments", "amount_minor"),
        _currency("payments", "currency"),
        schema=SCHEMA,
    )
    _index("payments", "order_id")

    op.create_table(
        "refunds",
        _id(),
        sa.Column("order_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("shopify_refund_id", sa.BigInteger(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        _pk("refunds"),
        _unique("refunds", "shopify_refund_id"),
        _fk("refunds", "order_id", "orders"),
        *_non_negative("refunds", "amount_minor"),
        _currency("refunds", "currency"),
        schema=SCHEMA,
    )
    _index("refunds", "order_id")

    op.create_table(
        "licenses",
        _id(),
        sa.Column("legacy_license_id", sa.BigInteger(), nullable=True),
        sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("script_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("starts_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=True),
        sa.Column("order_item_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("shopify_order_id", sa.BigInteger(), nullable=True),
        sa.Column("shopify_line_id", sa.BigInteger(), nullable=True),
        sa.Column("price_paid_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("price_currency", sa.CHAR(3), nullable=True),
        sa.Column("refunded", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", TZ, nullable=False, server_default=NOW),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        _pk("licenses"),
        _unique("licenses", "legacy_license_id"),
        _fk("licenses", "account_id", "accounts"),
        _fk("licenses", "script_id", "scripts"),
        _fk("licenses", "order_item_id", "order_items"),
        _check("licenses", "kind", _in("kind", ("monthly", "lifetime", "trial", "staff"))),
        *_non_negative("licenses", "price_paid_minor"),
        _currency("licenses", "price_currency"),
        schema=SCHEMA,
    )
    _index("licenses", "account_id")
    _index("licenses", "script_id")
    _index("licenses", "shopify_order_id")

    op.create_table(
        "instance_allowances",
        _id(),
        sa.Column("legacy_pack_id", sa.Integer(), nullable=True),
        sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False),
        # Negative slots are staff corrections and valid, so there is no sign check here.
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("starts_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        _pk("instance_allowances"),
        _unique("instance_allowances", "legacy_pack_id"),
        _fk("instance_allowances", "account_id", "accounts"),
        _check("instance_allowances", "source", _in("source", ("store", "staff", "promo"))),
        schema=SCHEMA,
    )
    _index("instance_allowances", "account_id")

    op.create_table(
        "reviews",
        _id(),
        sa.Column("legacy_review_id", sa.Integer(), nullable=True),
        sa.Column("script_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("account_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("rating", sa.SmallInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=True),
        _pk("reviews"),
        _unique("reviews", "legacy_review_id"),
        _unique("reviews", "script_id", "account_id"),
        _fk("reviews", "script_id", "scripts"),
        _fk("reviews", "account_id", "accounts"),
        _check("reviews", "rating", "rating BETWEEN 1 AND 5"),
        schema=SCHEMA,
    )
    _index("reviews", "account_id")


def downgrade() -> None:
    for table in (
        "reviews",
        "instance_allowances",
        "licenses",
        "refunds",
        "payments",
        "order_items",
        "orders",
        "prices",
        "products",
        "compile_jobs",
        "script_versions",
        "scripts",
        "accounts",
        "roles",
    ):
        op.drop_table(table, schema=SCHEMA)
    op.execute(sa.text(f'DROP SCHEMA "{SCHEMA}"'))
