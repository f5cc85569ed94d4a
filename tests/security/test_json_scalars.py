"""Every numeric field of every request body takes finite JSON numbers only, and every boolean
field JSON booleans only. Pydantic's lax mode reads `true` as 1, "5" as 5 and "yes" or 1 as true; the schema
promises a number or a boolean, and schemathesis (ST201) holds us to it."""

import math
import typing

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ValidationError

from master.app import create_app
from master.config import Settings


def _models(annotation: object, seen: set[type[BaseModel]]) -> None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation not in seen:
            seen.add(annotation)
            for field in annotation.model_fields.values():
                _models(field.annotation, seen)
        return
    for arg in typing.get_args(annotation):
        _models(arg, seen)


def _members(annotation: object) -> set[object]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return _members(args[0])
    if not args:
        return {annotation}
    return set().union(*(_members(a) for a in args))


def body_models() -> set[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    for ctx in iter_route_contexts(create_app(Settings()).routes):
        route = ctx.route
        if isinstance(route, APIRoute) and route.body_field is not None:
            _models(route.body_field.field_info.annotation, seen)
    return seen


MODELS = body_models()


def numeric_fields() -> list[tuple[type[BaseModel], str, bool]]:
    """(model, field, also takes a string) for each numeric field of a request body."""
    out = []
    for model in MODELS:
        for name, field in model.model_fields.items():
            members = _members(field.annotation)
            if members & {int, float}:
                out.append((model, name, str in members))
    return sorted(out, key=lambda t: (t[0].__name__, t[1]))


FIELDS = numeric_fields()
BOOLEANS = sorted(
    ((m, n) for m in MODELS for n, f in m.model_fields.items() if bool in _members(f.annotation)),
    key=lambda t: (t[0].__name__, t[1]),
)


def test_the_walk_finds_the_numeric_fields():
    found = {(m.__name__, n) for m, n, _ in FIELDS}
    assert {("AlertRulePatch", "resolve_for_seconds"), ("BatchIn", "ready_timeout")} <= found
    assert {("SilenceIn", "duration_seconds"), ("AdoptIn", "restart_limit")} <= found
    assert ("AlertRulePatch", "enabled") in {(m.__name__, n) for m, n in BOOLEANS}


def _refused(model: type[BaseModel], name: str, value: object) -> bool:
    try:
        model.model_validate({name: value})
    except ValidationError as exc:
        return any(err["loc"][:1] == (name,) for err in exc.errors())
    return False


@pytest.mark.parametrize(
    ("model", "name", "takes_str"), FIELDS, ids=lambda v: getattr(v, "__name__", v)
)
def test_numeric_fields_refuse_booleans_and_numeric_strings(model, name, takes_str):
    assert _refused(model, name, True), f"{model.__name__}.{name} took `true`"
    assert _refused(model, name, False), f"{model.__name__}.{name} took `false`"
    if not takes_str:
        assert _refused(model, name, "5"), f'{model.__name__}.{name} took "5"'
    # Python's json reads `Infinity` and `NaN` (not JSON); an infinite hysteresis was stored
    # and came back as null, which the response schema does not allow.
    for value in (math.inf, -math.inf, math.nan):
        assert _refused(model, name, value), f"{model.__name__}.{name} took {value}"
    # ...and still takes a number.
    assert not _refused(model, name, 1)


@pytest.mark.parametrize(("model", "name"), BOOLEANS, ids=lambda v: getattr(v, "__name__", v))
def test_boolean_fields_refuse_numbers_and_words(model, name):
    for value in (1, 0, "true", "yes", "0"):
        assert _refused(model, name, value), f"{model.__name__}.{name} took {value!r}"
    assert not _refused(model, name, False)
