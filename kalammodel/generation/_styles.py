"""The SQL style a step is written in, drawn per step (:class:`kalammodel.model.SqlStyle`).

Half the steps are written canonically; the others draw every field of the style, each from a list whose first
element is the canonical spelling. Hypothesis shrinks ``one_of`` towards its first branch and ``sampled_from``
towards its first element, so a shrunk program is canonical wherever the spelling does not matter (and the step
reducer's last simplification, ``generation/reduce.py``, says so for each step that is left).
"""

from __future__ import annotations

import attrs
from hypothesis import strategies as st

from ..model import CANONICAL_STYLE, SqlStyle
from ..steps import Step

__all__ = ["STYLE_CHOICES", "restyle", "sql_styles", "styled"]

#: every value of every style field, the canonical one first (tests/model/test_style.py checks both)
STYLE_CHOICES: dict[str, tuple[object, ...]] = {
    "keywords": ("upper", "lower", "title"),
    "ne": ("!=", "<>"),
    "parens": ("canonical", "minimal", "extra"),
    "space": ("single", "wide", "newline", "tight", "tab"),
    "quote": (False, True),
    "negation": ("prefix", "infix"),
    "operands": ("column_first", "literal_first"),
    "booleans": ("lower", "upper"),
    "doubles": ("shortest", "exponent"),
    "semicolon": (False, True),
}


@st.composite
def _any_style(draw: st.DrawFn) -> SqlStyle:
    fields = {name: draw(st.sampled_from(choices), label=f"style {name}") for name, choices in STYLE_CHOICES.items()}
    return SqlStyle(**fields)  # type: ignore[arg-type]  # the values are the validators' own lists


_STYLES: st.SearchStrategy[SqlStyle] = st.one_of(st.just(CANONICAL_STYLE), _any_style())


def sql_styles() -> st.SearchStrategy[SqlStyle]:
    """A SQL style: canonical half the time, otherwise any combination of the fields; shrinks to canonical."""
    return _STYLES


def styled(step: Step) -> bool:
    """Whether ``step`` has a SQL style (every step that sends SQL; runner actions and live controls do not)."""
    return "style" in attrs.fields_dict(type(step))  # type: ignore[arg-type]  # steps are attrs classes


def restyle(step: Step, style: SqlStyle) -> Step:
    """``step`` written in ``style`` (itself when it has no style)."""
    return attrs.evolve(step, style=style) if styled(step) else step  # type: ignore[misc]
