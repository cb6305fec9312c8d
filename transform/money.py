"""Money: decimal text to integer minor units and back, exactly.

DECIMAL columns arrive as text (decision 0001) and Shopify sends money as decimal strings
(``"19.99"``); the new schema stores integer minor units with a currency. Floats never
appear: ``0.1 + 0.2`` is not ``0.3``, and a cent lost in conversion is a reconciliation
difference forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import pyarrow as pa
import pyarrow.compute as pc

from runeshift.errors import ConfigError
from transform.registry import TransformResult, transform
from transform.row_errors import as_array, count_true, errors_where, merge_errors, null_where

__all__ = ["CURRENCY_EXPONENTS", "minor_to_money", "money_to_minor"]

# ISO 4217 minor-unit exponents for the currencies Shopify can present; 2 is not assumed
# for unknown codes, because guessing wrong scales an amount by 10 or 100.
_EXPONENT_TABLE = """
2 USD EUR GBP CAD AUD NZD CHF SEK NOK DKK PLN CZK HUF RON BGN BRL MXN ARS COP PEN
2 INR CNY HKD SGD TWD THB MYR PHP IDR ZAR TRY ILS AED SAR QAR EGP RUB UAH
0 JPY KRW ISK CLP VND XAF XOF XPF UGX PYG RWF KMF GNF DJF
3 KWD BHD OMR JOD TND LYD IQD
"""
CURRENCY_EXPONENTS: Mapping[str, int] = MappingProxyType(
    {
        code: int(line.split()[0])
        for line in _EXPONENT_TABLE.strip().splitlines()
        for code in line.split()[1:]
    }
)

_DECIMAL = r"^(?P<sign>[+-]?)(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?$"
_INT64_MAX = str(2**63 - 1)  # 19 digits; equal-length digit strings compare like numbers


def _exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency.strip().upper()]
    except KeyError:
        raise ConfigError(
            f"unknown currency {currency!r}; add its ISO 4217 exponent to "
            "transform.money.CURRENCY_EXPONENTS"
        ) from None


def _exponents_per_row(currencies: pa.Array) -> tuple[pa.Array, pa.Array | None]:
    """(int8 exponent per row, errors for unknown currency codes)."""
    codes = pc.utf8_upper(pc.utf8_trim_whitespace(as_array(currencies).cast(pa.string())))
    known = pa.array(list(CURRENCY_EXPONENTS), pa.string())
    exponents = pc.take(
        pa.array(list(CURRENCY_EXPONENTS.values()), pa.int8()), pc.index_in(codes, known)
    )
    unknown = pc.and_(pc.is_valid(codes), pc.is_null(exponents))
    missing = pc.is_null(codes)
    reasons = pc.coalesce(
        pc.binary_join_element_wise("unknown currency '", codes, "'", ""),
        pa.scalar("currency is null", pa.string()),
    )
    return exponents, errors_where(pc.or_(unknown, missing), reasons)


@transform(
    "money_to_minor",
    input_types=(pa.string(), pa.large_string()),
    output_type=pa.int64(),
    params={"currency": str},
    inverse="minor_to_money",
)
def money_to_minor(
    amounts: pa.Array, currencies: pa.Array | None = None, *, currency: str | None = None
) -> TransformResult:
    """Convert decimal text to integer minor units of its currency, exactly.

    ``'19.99'`` USD -> ``1999``, ``'-1.50'`` -> ``-150``, ``'5'`` -> ``500``, ``'0.00'`` ->
    ``0``, ``'1500'`` JPY -> ``1500``, ``'1.234'`` KWD -> ``1234``. The currency is the
    ``currency`` parameter (``monthly_price`` is always USD) or a second array with a code
    per row (``price_paid`` is in the order's currency); exactly one must be given.

    Fractional digits beyond the currency's exponent are quarantined unless they are all
    zeros (``'19.990'`` is exactly 1999; ``'19.995'`` would need rounding, which is never
    done silently). Also quarantined: text that is not a plain decimal (``'1e3'``,
    ``'$5'``, ``''``), a magnitude beyond int64, an unknown currency. Surrounding whitespace is
    ignored. Pure Arrow string kernels, no floats and no per-row Python.
    """
    if (currencies is None) == (currency is None):
        raise ConfigError(
            "money_to_minor needs exactly one of a currency column or the 'currency' parameter"
        )
    text = as_array(amounts).cast(pa.string())
    n = len(text)
    if currency is not None:
        exponents: pa.Array = pa.repeat(pa.scalar(_exponent(currency), pa.int8()), n)
        currency_errors = None
    else:
        assert currencies is not None
        exponents, currency_errors = _exponents_per_row(currencies)
    exponents = pc.cast(exponents, pa.int64())

    minor, settled = _plain_amounts_to_minor(text, exponents)
    errors = currency_errors
    unsettled = pc.and_(pc.is_valid(text), pc.invert(settled))
    if currency_errors is not None:
        unsettled = pc.and_(unsettled, pc.is_null(currency_errors))
    if count_true(unsettled):
        rest, rest_errors = _amounts_to_minor_exactly(
            pc.filter(text, unsettled), pc.filter(exponents, unsettled)
        )
        minor = pc.replace_with_mask(minor, unsettled, rest)
        if rest_errors is not None:
            errors = merge_errors(
                errors, pc.replace_with_mask(pa.nulls(n, pa.string()), unsettled, rest_errors)
            )
    notes: dict[str, int] = {}
    if k := count_true(pc.less(minor, 0)):
        notes["negative amount"] = k
    return TransformResult(minor, errors=errors, notes=notes)


# Up to 15 integer digits times at most 10**3 stays below 2**63.
_PLAIN_AMOUNT = r"^-?[0-9]{1,15}(\.[0-9]{1,3})?$"


def _plain_amounts_to_minor(text: pa.Array, exponents: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Fast path for ``'-123.45'``-shaped text with no more fraction digits than allowed.

    Returns (minor units, null outside the fast path; mask of the rows it settled). Drops
    the dot, parses the digits as an integer and scales by 10**(exponent - fraction digits).
    """
    shaped = pc.and_(
        pc.fill_null(pc.match_substring_regex(text, _PLAIN_AMOUNT), False),
        pc.is_valid(exponents),
    )
    dot = pc.find_substring(text, ".")
    fraction_digits = pc.if_else(
        pc.less(dot, 0), 0, pc.subtract(pc.subtract(pc.utf8_length(text), dot), 1)
    )
    fraction_digits = pc.cast(fraction_digits, pa.int64())
    settled = pc.fill_null(pc.and_(shaped, pc.less_equal(fraction_digits, exponents)), False)
    digits = pc.if_else(settled, pc.replace_substring(text, ".", ""), "0")
    shift = pc.if_else(settled, pc.subtract(exponents, fraction_digits), 0)
    scale = pc.power(10, shift)
    minor = pc.multiply_checked(pc.cast(digits, pa.int64()), pc.cast(scale, pa.int64()))
    return null_where(minor, pc.invert(settled)), settled


def _amounts_to_minor_exactly(
    raw: pa.Array, exponents: pa.Array
) -> tuple[pa.Array, pa.Array | None]:
    """The full parser: whitespace, ``+``, ``'5.'``, ``'.5'``, surplus zeros, errors."""
    text = pc.utf8_trim_whitespace(raw)
    n = len(text)
    parts = pc.extract_regex(text, _DECIMAL)
    sign = pc.struct_field(parts, "sign")
    int_part = pc.struct_field(parts, "int")
    frac = pc.utf8_rtrim(pc.fill_null(pc.struct_field(parts, "frac"), ""), characters="0")
    has_digit = pc.or_(
        pc.greater(pc.utf8_length(int_part), 0),
        pc.greater(pc.utf8_length(pc.fill_null(pc.struct_field(parts, "frac"), "")), 0),
    )
    not_decimal = pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(has_digit, False)))
    too_precise = pc.greater(pc.utf8_length(frac), exponents)

    digits = pa.nulls(n, pa.string())
    for exponent in (0, 2, 3):
        padded = pc.utf8_rpad(frac, width=exponent, padding="0") if exponent else frac
        joined = pc.binary_join_element_wise(int_part, padded, "")
        digits = pc.if_else(pc.fill_null(pc.equal(exponents, exponent), False), joined, digits)
    digits = pc.utf8_ltrim(digits, characters="0")
    digits = pc.if_else(pc.equal(digits, ""), "0", digits)
    length = pc.utf8_length(digits)
    too_long = pc.or_(
        pc.greater(length, len(_INT64_MAX)),
        pc.and_(pc.equal(length, len(_INT64_MAX)), pc.greater(digits, _INT64_MAX)),
    )

    quoted = pc.binary_join_element_wise("amount '", text, "'", "")
    errors = merge_errors(
        errors_where(
            not_decimal,
            pc.binary_join_element_wise(quoted, " is not a decimal number", ""),
        ),
        errors_where(
            too_precise,
            pc.binary_join_element_wise(
                quoted,
                " has more fractional digits than the currency's ",
                pc.cast(exponents, pa.string()),
                "; not rounding",
                "",
            ),
        ),
        errors_where(too_long, pc.binary_join_element_wise(quoted, " is too large", "")),
    )
    bad = pc.is_valid(errors) if errors is not None else None
    magnitude = pc.cast(null_where(digits, bad), pa.int64())
    negative = pc.fill_null(pc.equal(sign, "-"), False)
    return pc.if_else(negative, pc.negate(magnitude), magnitude), errors


@transform(
    "minor_to_money",
    input_types=(pa.int64(), pa.int32()),
    output_type=pa.string(),
    params={"currency": str},
    inverse="money_to_minor",
)
def minor_to_money(
    minor: pa.Array, currencies: pa.Array | None = None, *, currency: str | None = None
) -> TransformResult:
    """Write integer minor units back as decimal text with the currency's digits.

    ``1999`` USD -> ``'19.99'``, ``-150`` -> ``'-1.50'``, ``5`` -> ``'0.05'``, ``1500`` JPY
    -> ``'1500'``. The inverse of ``money_to_minor`` (same currency argument rules).
    """
    if (currencies is None) == (currency is None):
        raise ConfigError(
            "minor_to_money needs exactly one of a currency column or the 'currency' parameter"
        )
    values = pc.cast(as_array(minor), pa.int64())
    n = len(values)
    if currency is not None:
        exponents = pa.repeat(pa.scalar(_exponent(currency), pa.int8()), n)
        currency_errors = None
    else:
        assert currencies is not None
        exponents, currency_errors = _exponents_per_row(currencies)
    # abs() of int64 min overflows; decimal128 handles every int64 exactly.
    magnitude = pc.cast(pc.abs(pc.cast(values, pa.decimal128(20, 0))), pa.string())
    text = pa.nulls(n, pa.string())
    for exponent in (0, 2, 3):
        if exponent:
            padded = pc.utf8_lpad(magnitude, width=exponent + 1, padding="0")
            whole = pc.utf8_slice_codeunits(padded, 0, -exponent)
            fraction = pc.utf8_slice_codeunits(padded, -exponent, 2**31 - 1)
            formatted = pc.binary_join_element_wise(whole, fraction, ".")
        else:
            formatted = magnitude
        text = pc.if_else(pc.fill_null(pc.equal(exponents, exponent), False), formatted, text)
    signed = pc.if_else(
        pc.fill_null(pc.less(values, 0), False),
        pc.binary_join_element_wise("-", text, ""),
        text,
    )
    if currency_errors is not None:
        signed = null_where(signed, pc.is_valid(currency_errors))
    return TransformResult(signed, errors=currency_errors)
