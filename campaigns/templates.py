"""SMS templates: ``{{name}}`` placeholders checked when a campaign or an event is created, rendered per row.

Telnyx documents ``dynamic_variables`` as "a map of dynamic variable names to values [that] can be referenced in
the assistant's instructions and messages using {{variable_name}} syntax"
(https://developers.telnyx.com/api-reference/assistants/create-a-scheduled-event), and lists the system
variables ``telnyx_agent_target``, ``telnyx_end_user_target``, ``telnyx_conversation_channel``
(https://developers.telnyx.com/docs/inference/ai-assistants/dynamic-variables). So an SMS ``text`` is rendered
with the event's variables and those built-ins before it is sent, on ``/v2`` as on ``/v1``; what Telnyx does with
a placeholder it has no value for is not documented, and a text that would go out with a literal ``{{name}}`` is
never what the sender meant: here it is refused at creation, naming the placeholder.

Templates are Jinja2 (sandboxed; an undefined name is an error, never an empty string), so the Telnyx form
``{{first_name}}`` works as written, and a default is ``{{ first_name | default("there") }}``. A variable whose
value is empty counts as missing: the row is rejected unless the template gives a default. ``telnyx_current_time``
is not offered: the text is rendered when the event is created, not when the conversation starts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

BUILT_INS: Final = ("telnyx_agent_target", "telnyx_end_user_target", "telnyx_conversation_channel")
"""Names a template may use without a column: Telnyx's system variables known when the text is rendered."""

_ENV: Final = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # a text message, not HTML
    keep_trailing_newline=True,
)


class TemplateError(ValueError):
    """The template cannot be used: ``str()`` names what is wrong (syntax, or the unknown names)."""

    def __init__(self, message: str, unknown: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.unknown = unknown


class MissingValue(ValueError):
    """A row has no value for a variable the template uses without a default: ``name`` is that variable."""

    def __init__(self, name: str) -> None:
        super().__init__(f"empty value for {name!r}, which the text uses (or give a default in the template)")
        self.name = name


@dataclass(frozen=True)
class Template:
    """A checked template: ``names`` are the variables it refers to."""

    source: str
    names: frozenset[str]
    _compiled: jinja2.Template

    def render(self, variables: Mapping[str, str]) -> str:
        """The text for one row; raises :class:`MissingValue` for a used variable that is empty or absent."""
        if not self.names and not has_placeholders(self.source):
            return self.source
        context = {k: v for k, v in variables.items() if v is not None and str(v).strip()}
        try:
            return self._compiled.render(context)
        except jinja2.UndefinedError as exc:
            raise MissingValue(_undefined_name(exc, self.names - context.keys())) from None
        except jinja2.TemplateError as exc:  # a filter given a bad argument, a sandbox refusal
            raise TemplateError(f"the text cannot be rendered: {exc}") from None


def _undefined_name(exc: jinja2.UndefinedError, candidates: Collection[str]) -> str:
    message = str(exc)
    for name in sorted(candidates):
        if f"'{name}'" in message:
            return name
    return sorted(candidates)[0] if candidates else message


def has_placeholders(text: str) -> bool:
    """Whether ``text`` contains template syntax at all (plain texts skip Jinja entirely)."""
    return "{{" in text or "{%" in text or "{#" in text


def parse_template(text: str, known: Collection[str] | None) -> Template:
    """Check ``text``: its syntax, and (unless ``known`` is ``None``) that every name it uses is in ``known`` or a
    built-in. Raises :class:`TemplateError` naming the unknown placeholders."""
    try:
        tree = _ENV.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        hint = ""
        if " " in str(exc.source or "") and "end of print statement" in str(exc.message):
            hint = " (a name with spaces: use its normalized name, e.g. {{appointment_date}}, or map the column)"
        raise TemplateError(f"the text is not a valid template, line {exc.lineno}: {exc.message}{hint}") from None
    names = frozenset(meta.find_undeclared_variables(tree))
    if known is not None:
        unknown = tuple(sorted(names - set(known) - set(BUILT_INS)))
        if unknown:
            listed = ", ".join("{{" + n + "}}" for n in unknown)
            raise TemplateError(
                f"the text uses {listed}, which is not a column, a mapped variable or a built-in "
                f"({', '.join(BUILT_INS)})",
                unknown,
            )
    return Template(text, names, _ENV.from_string(text))


def render_text(text: str, variables: Mapping[str, str]) -> str:
    """Render ``text`` with ``variables`` (no check of the names first): :class:`MissingValue` for a missing one."""
    if not has_placeholders(text):
        return text
    return parse_template(text, None).render(variables)
