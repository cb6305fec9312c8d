"""The registry of named transforms that mappings refer to.

A transform is a small pure function over Arrow arrays, registered under a name with the
Arrow types it accepts and returns and the keyword parameters a mapping may pass. The
mapping loader looks transforms up by name (``get_transform``), checks the reader's column
types against ``TransformSpec.input_types`` and the mapping's parameters against
``TransformSpec.params`` (``validate_params``), and the mapping engine then calls
``spec.fn(*arrays, **params)``.

A transform never raises for bad data: a row it cannot convert gets a reason in
``TransformResult.errors`` (the engine quarantines that row) and observations worth a line
in the run report are counted in ``TransformResult.notes``. It raises ``ConfigError`` only
for a mistake in the mapping (unknown parameter, wrong parameter value).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

import pyarrow as pa

from runeshift.errors import ConfigError

__all__ = [
    "TransformResult",
    "TransformSpec",
    "all_transforms",
    "get_transform",
    "transform",
]


@dataclass(frozen=True)
class TransformResult:
    """What a transform returns for one batch of arrays.

    Attributes:
        values: The converted values, same length as the input, of the spec's output type.
            A row with an error has a null value here.
        errors: ``pa.string()`` array of the same length: the reason each row must be
            quarantined, null where the row is fine; ``None`` when no row failed.
        notes: Counted observations for the run report, e.g. ``{"flag value 2": 3}``.
    """

    values: pa.Array
    errors: pa.Array | None = None
    notes: Mapping[str, int] = field(default_factory=dict)

    def error_count(self) -> int:
        """Number of rows that must be quarantined."""
        if self.errors is None:
            return 0
        return int(len(self.errors) - self.errors.null_count)


@dataclass(frozen=True)
class TransformSpec:
    """A registered transform and what the mapping loader needs to check its use.

    Attributes:
        name: The name mappings use.
        fn: ``fn(*arrays, **params) -> TransformResult``.
        input_types: Arrow types each input array may have (``None``: any type).
        output_type: Arrow type of ``TransformResult.values``; ``None`` means "the type
            of the first input" (``copy``, ``range_check``, ``zero_to_null`` on any int).
        params: Keyword parameters a mapping may pass, with their Python types.
        inverse: Name of the transform that maps the target value back to the raw source
            value (reverse replication), if there is one.
        doc: What the transform does and why (its docstring).
        required_params: Parameters the mapping must pass (keyword-only, no default).
        min_arrays: Fewest input arrays the transform takes.
        max_arrays: Most input arrays it takes (``None``: unbounded, e.g. ``uuid_from_key``).
    """

    name: str
    fn: Callable[..., TransformResult]
    input_types: tuple[pa.DataType, ...] | None
    output_type: pa.DataType | None
    params: Mapping[str, type]
    inverse: str | None
    doc: str
    required_params: frozenset[str] = frozenset()
    min_arrays: int = 1
    max_arrays: int | None = 1

    def accepts(self, arrow_type: pa.DataType) -> bool:
        """Whether an input column of ``arrow_type`` may be passed to this transform."""
        return self.input_types is None or any(arrow_type.equals(t) for t in self.input_types)

    def result_type(self, first_input: pa.DataType) -> pa.DataType:
        """The output type when the first input array has type ``first_input``."""
        return first_input if self.output_type is None else self.output_type

    def validate_params(self, params: Mapping[str, object], *, where: str = "") -> None:
        """Raise ``ConfigError`` if ``params`` has unknown, missing or mistyped entries.

        Args:
            params: The keyword parameters the mapping passes.
            where: Location for the message, e.g. ``"mappings/repo.yaml:41"``.
        """
        prefix = f"{where}: " if where else ""
        for key, value in params.items():
            if key not in self.params:
                allowed = ", ".join(sorted(self.params)) or "none"
                raise ConfigError(
                    f"{prefix}transform {self.name!r} has no parameter {key!r}; "
                    f"allowed parameters: {allowed}"
                )
            expected = self.params[key]
            # bool is an int in Python; a YAML `true` must not pass for `min: 1`.
            wrong_bool = isinstance(value, bool) and expected is not bool
            if wrong_bool or not isinstance(value, expected):
                raise ConfigError(
                    f"{prefix}transform {self.name!r} parameter {key!r} must be "
                    f"{expected.__name__}, got {value!r}"
                )
        missing = sorted(self.required_params - params.keys())
        if missing:
            raise ConfigError(
                f"{prefix}transform {self.name!r} needs parameter(s) {', '.join(missing)}"
            )


_REGISTRY: dict[str, TransformSpec] = {}

_Fn = TypeVar("_Fn", bound=Callable[..., TransformResult])


def transform(
    name: str,
    *,
    input_types: tuple[pa.DataType, ...] | None,
    output_type: pa.DataType | None,
    params: Mapping[str, type] | None = None,
    inverse: str | None = None,
) -> Callable[[_Fn], _Fn]:
    """Register the decorated function as the transform ``name``.

    The function's signature gives the rest of the spec: positional parameters without
    defaults are required arrays, a ``*arrays`` parameter makes the count unbounded, and
    keyword-only parameters without a default are required params.

    Raises:
        ConfigError: ``name`` is already registered, or ``params`` does not match the
            function's keyword-only parameters.
    """
    declared = dict(params or {})

    def register(fn: _Fn) -> _Fn:
        if name in _REGISTRY:
            raise ConfigError(f"transform {name!r} is registered twice")
        sig = inspect.signature(fn)
        positional = [
            p
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        keyword_only = {p.name: p for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}
        if set(keyword_only) != set(declared):
            raise ConfigError(
                f"transform {name!r}: declared params {sorted(declared)} do not match "
                f"the function's keyword-only parameters {sorted(keyword_only)}"
            )
        variadic = any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values())
        _REGISTRY[name] = TransformSpec(
            name=name,
            fn=fn,
            input_types=input_types,
            output_type=output_type,
            params=MappingProxyType(declared),
            inverse=inverse,
            doc=inspect.cleandoc(fn.__doc__ or ""),
            required_params=frozenset(
                k for k, p in keyword_only.items() if p.default is inspect.Parameter.empty
            ),
            min_arrays=sum(1 for p in positional if p.default is inspect.Parameter.empty),
            max_arrays=None if variadic else len(positional),
        )
        return fn

    return register


def get_transform(name: str) -> TransformSpec:
    """The transform registered as ``name``.

    Raises:
        ConfigError: No such transform; the message lists close matches.
    """
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown transform {name!r}{hint} (see `all_transforms()` for the list)"
        ) from None


def all_transforms() -> Mapping[str, TransformSpec]:
    """Every registered transform by name (read-only view)."""
    _load_all()
    return MappingProxyType(_REGISTRY)


def _load_all() -> None:
    """Import the transform modules so their decorators have registered them."""
    import transform  # noqa: F401  (its __init__ imports every transform module)
