"""The shipped specs load; a broken spec fails with file:line, the rule broken and the fix."""

from __future__ import annotations

import pytest

from runeshift.errors import ConfigError
from transform.mapping_expression import parse_expression
from transform.mapping_loader import load_mapping_texts, load_mappings
from transform.mapping_spec import Call, Column, Literal_, unique_by_construction


def test_shipped_specs_load_in_foreign_key_order():
    mappings = load_mappings()
    order = [t.table for t in mappings.targets]
    assert order.index("rune.accounts") < order.index("rune.licenses")
    assert (
        order.index("rune.scripts")
        < order.index("rune.script_versions")
        < order.index("rune.compile_jobs")
    )
    assert order.index("rune.roles") < order.index("rune.accounts")
    accounts = mappings.target("accounts")
    assert [f.qualified for f in accounts.feeds][:3] == [
        "forums.core_members",
        "repo.auth0_links",
        "forums.core_pfields_content",
    ]
    assert "members_pass_hash" in dict(accounts.primary.exclude_columns)
    assert "members_pass_hash" not in accounts.primary.used_columns()
    assert [e.table for e in mappings.excluded_tables] == ["api_sessions"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name", Column("name")),
        ("'USD'", Literal_("USD")),
        ("repair_mojibake(name)", Call("repair_mojibake", (Column("name"),))),
        (
            "uuid_from_key(member_id, entity='account')",
            Call("uuid_from_key", (Column("member_id"),), (("entity", "account"),)),
        ),
        (
            "ny_local_to_utc(zero_date_to_null(expires_at, meaning='never expires'))",
            Call(
                "ny_local_to_utc",
                (
                    Call(
                        "zero_date_to_null",
                        (Column("expires_at"),),
                        (("meaning", "never expires"),),
                    ),
                ),
            ),
        ),
        (
            "range_check(rating, min=1, max=5)",
            Call("range_check", (Column("rating"),), (("min", 1), ("max", 5))),
        ),
    ],
    ids=["column", "literal", "call", "keyword-param", "nested", "int-params"],
)
def test_expressions_parse(text, expected):
    assert parse_expression(text) == expected


SPEC = """targets:
  rune.reviews:
    id: uuid_from_key(id, entity='review')
    from:
      - source: repo.script_reviews
        key: [id]
        columns:
          rating: {rating_rule}
          body: body
{extra}"""


@pytest.mark.parametrize(
    ("rating_rule", "extra", "message"),
    [
        (
            "repair_mojibak(rating)",
            "",
            "reviews.yaml:8: unknown transform 'repair_mojibak'; did you mean repair_mojibake",
        ),
        (
            "range_check(rating, minimum=1)",
            "",
            "reviews.yaml:8: transform 'range_check' has no parameter 'minimum'",
        ),
        ("range_check(rating, min=1, max=5", "", "reviews.yaml:8: cannot parse expression"),
        (
            "rating",
            "        exclude_columns:\n          created_at: ''\n",
            "reviews.yaml:11: excluded column script_reviews.created_at needs a reason",
        ),
        (
            "rating",
            "        colums: {}\n",
            "reviews.yaml:10: unknown key 'colums' in a feed; did you mean 'columns'?",
        ),
        (
            "{expr: rating, references: rune.nowhere}",
            "",
            "references rune.nowhere, which no mapping defines",
        ),
    ],
    ids=[
        "unknown-transform",
        "unknown-param",
        "bad-syntax",
        "exclusion-without-reason",
        "misspelt-key",
        "dangling-reference",
    ],
)
def test_broken_spec_names_file_line_and_fix(rating_rule, extra, message):
    with pytest.raises(ConfigError) as info:
        load_mapping_texts({"reviews.yaml": SPEC.format(rating_rule=rating_rule, extra=extra)})
    assert message in str(info.value)


def test_id_columns_must_be_in_every_feed_key():
    spec = (
        SPEC.format(rating_rule="rating", extra="")
        + "      - source: repo.scripts\n        key: [script_id]\n"
    )
    with pytest.raises(
        ConfigError, match=r"reviews.yaml:\d+: the id of rune.reviews is computed from id"
    ):
        load_mapping_texts({"reviews.yaml": spec})


def test_columns_unique_by_construction_are_the_key_and_its_uuid():
    mappings = load_mappings()
    licenses = mappings.target("licenses")
    assert unique_by_construction(licenses, licenses.primary) == {"id", "legacy_license_id"}
    scripts = mappings.target("scripts")
    # slug is deduplicated (a loser gets a suffix); the key columns still qualify
    assert "slug" not in unique_by_construction(scripts, scripts.primary)
    assert "id" in unique_by_construction(scripts, scripts.primary)
    # a column computed from the key is not the key: only the key copied as it is counts
    spec = load_mapping_texts(
        {
            "reviews.yaml": SPEC.format(rating_rule="rating", extra="")
            + "          legacy_review_id: id\n          doubled: money_to_minor(id, currency='USD')\n"
        }
    ).target("reviews")
    assert unique_by_construction(spec, spec.primary) == {"id", "legacy_review_id"}
    # an id from a key that is not the feed's whole key repeats across rows: nothing qualifies
    two_part = load_mapping_texts(
        {
            "reviews.yaml": SPEC.replace("key: [id]", "key: [id, script_id]")
            .replace(
                "uuid_from_key(id, entity='review')",
                "uuid_from_key(id, script_id, entity='review')",
            )
            .format(rating_rule="rating", extra="")
            + "          legacy_review_id: id\n"
        }
    ).target("reviews")
    assert unique_by_construction(two_part, two_part.primary) == frozenset()
