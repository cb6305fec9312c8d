"""Data-quality suites over the target, run with Great Expectations.

The row-level diff proves the target equals the source through the mapping;
these suites prove the target makes sense as Rune's data whatever the source
said: business invariants that no single column rule can see. They run inside
PostgreSQL (a GE SQL data source; no table is pulled into pandas), and each
expectation becomes one ``QualityResult`` of the report, with up to five
offending values masked like every other value in a report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from reconcile.personal_data_masking import mask_value
from reconcile.report_model import QualityResult

# GE substitutes ``{batch}`` with str.format, so the regex avoids braces: 32+ hex digits is
# 32 classes and a '+'.
_HEX32 = "[0-9a-fA-F]" * 32
SECRET_REGEX = r"\$2[abxy]?\$[0-9][0-9]\$|(^|[^0-9a-fA-F])" + _HEX32 + r"+([^0-9a-fA-F]|$)"


@dataclass(frozen=True)
class _Check:
    suite: str
    table: str
    description: str
    column: str | None = None
    minimum: int | None = None
    unexpected_rows: str | None = None


def _checks() -> list[_Check]:
    checks = [
        _Check(
            "referential_integrity",
            "licenses",
            "every license references an existing account and script",
            unexpected_rows=(
                "SELECT legacy_license_id FROM {batch} WHERE NOT EXISTS "
                "(SELECT 1 FROM rune.accounts a WHERE a.id = account_id) OR NOT EXISTS "
                "(SELECT 1 FROM rune.scripts s WHERE s.id = script_id)"
            ),
        ),
        _Check(
            "money",
            "orders",
            "order total = items - discounts + shipping + tax",
            unexpected_rows=(
                "SELECT subselect.name FROM {batch} WHERE subselect.total_minor <> "
                "(SELECT coalesce(sum(i.unit_price_minor * i.quantity), 0) FROM rune.order_items i "
                "WHERE i.order_id = subselect.id) - subselect.discount_minor "
                "+ subselect.shipping_minor + subselect.tax_minor"
            ),
        ),
        _Check(
            "identity",
            "accounts",
            "emails of accounts that can log in are unique case-insensitively",
            unexpected_rows=(
                "SELECT lower(email) FROM {batch} WHERE can_login AND email IS NOT NULL "
                "GROUP BY lower(email) HAVING count(*) > 1"
            ),
        ),
        _Check(
            "secrets",
            "accounts",
            "no account value looks like a password hash or token",
            unexpected_rows=(
                "SELECT legacy_member_id::text FROM {batch} WHERE concat_ws(' ', display_name, email, "
                f"timezone, profile::text) ~ '{SECRET_REGEX}'"
            ),
        ),
        _Check(
            "secrets",
            "scripts",
            "no script value looks like a password hash or token",
            unexpected_rows=(
                "SELECT legacy_script_id::text FROM {batch} WHERE concat_ws(' ', name, slug, "
                f"description_html, settings::text) ~ '{SECRET_REGEX}'"
            ),
        ),
    ]
    for table, column in (
        ("licenses", "price_paid_minor"),
        ("scripts", "monthly_price_minor"),
        ("prices", "amount_minor"),
        ("orders", "total_minor"),
        ("order_items", "unit_price_minor"),
        ("refunds", "amount_minor"),
    ):
        checks.append(
            _Check("money", table, f"{table}.{column} is not negative", column=column, minimum=0)
        )
    return checks


def _exception_message(info: dict[str, Any]) -> str:
    """GE reports exceptions per metric (a dict of dicts) or once (a flat dict)."""
    if info.get("raised_exception"):
        return str(info.get("exception_message", ""))[:300]
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message", ""))[:300]
    return ""


def _sqlalchemy_url(pg_url: str) -> str:
    return "postgresql+psycopg://" + pg_url.split("://", 1)[1]


def run_quality_suites(pg_url: str) -> list[QualityResult]:
    """Validate every check against the target; a check that cannot run is a failed result."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from sqlalchemy.pool import NullPool

    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # core never prints
    # No pool: each connection closes when GE returns it, instead of lingering in a pool
    # that only the garbage collector would close (a ResourceWarning, much later).
    # (``kwargs`` goes to create_engine; GE's generated signature does not declare it.)
    source = context.data_sources.add_postgres(  # type: ignore[call-arg]
        "rune", connection_string=_sqlalchemy_url(pg_url), kwargs={"poolclass": NullPool}
    )
    batches: dict[str, Any] = {}
    results: list[QualityResult] = []
    for check in _checks():
        name = f"{check.suite}: {check.description}"
        try:
            if check.table not in batches:
                asset = source.add_table_asset(
                    check.table, table_name=check.table, schema_name="rune"
                )
                batches[check.table] = asset.add_batch_definition_whole_table("all").get_batch()
            expectation: Any
            if check.unexpected_rows is not None:
                expectation = gx.expectations.UnexpectedRowsExpectation(  # type: ignore[attr-defined]
                    unexpected_rows_query=check.unexpected_rows, description=check.description
                )
            else:
                expectation = gx.expectations.ExpectColumnValuesToBeBetween(  # type: ignore[attr-defined]
                    column=check.column or "", min_value=check.minimum
                )
            outcome = batches[check.table].validate(expectation)
        except Exception as exc:  # GE wraps driver errors in many types; report, don't crash
            results.append(
                QualityResult(check.suite, name, check.description, False, 0, error=str(exc)[:300])
            )
            continue
        detail = outcome.result or {}
        if check.unexpected_rows is not None:
            observed = detail.get("observed_value")
            count = int(observed) if isinstance(observed, int) else 0
            rows = detail.get("details", {}).get("unexpected_rows") or []
            sample = [str(next(iter(r.values()))) for r in rows[:5] if isinstance(r, dict)]
            element_count = None
        else:
            count = int(detail.get("unexpected_count") or 0)
            sample = [str(v) for v in (detail.get("partial_unexpected_list") or [])[:5]]
            element_count = detail.get("element_count")
        error = _exception_message(outcome.exception_info or {})
        results.append(
            QualityResult(
                check.suite,
                name,
                check.description,
                bool(outcome.success) and not error,
                count,
                element_count,
                [
                    mask_value(f"rune.{check.table}", check.column or "value", s) or ""
                    for s in sample
                ],
                error,
            )
        )
    return results
