"""A recurring definition: its fields, their validation (all problems at once), and TOML definition files."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from campaigns import campaign as campaign_service
from campaigns import windows
from campaigns.errors import FieldError, ValidationFailed
from campaigns.mapping import check_list_settings, normalize_header
from campaigns.recurring.due import DueRule, parse_due
from campaigns.recurring.schedule import check_cron, shortest_interval
from campaigns.settings import get_settings

LIST_FIELDS = ("mapping", "variables", "drop_columns", "date_order")
"""Call-list settings a definition sets for every campaign it creates (the same as a campaign's, campaigns.mapping)."""
DEFINITION_FIELDS = ("name", "cron", "timezone", "source", "due", "dedupe_key", "enabled", "campaign", *LIST_FIELDS)
TEMPLATE_FORBIDDEN = {"name": "is the definition's name plus the run", "start_at": "is the time of each run"}


@dataclass(frozen=True)
class Definition:
    """A validated definition (from a TOML file or the API)."""

    name: str
    cron: str
    timezone: str
    source: str
    """Absolute path or glob."""
    due: str
    dedupe_key: tuple[str, ...]
    campaign: dict[str, Any]
    enabled: bool
    origin: str
    origin_path: str | None = None
    allowed_root: str | None = None
    """The directory every file a run reads must lie in, symlinks resolved (an API definition's is
    ``CAMPAIGNS_RECURRING_DIR`` when it was stored); ``None``: a definition file's, any file the worker reads."""
    call_list: dict[str, Any] | None = None
    """``mapping``, ``variables``, ``drop_columns``, ``date_order`` as stored (``ListSettings.as_json``)."""

    @property
    def rule(self) -> DueRule:
        return parse_due(self.due)

    def spec_hash(self) -> str:
        spec = {
            "name": self.name, "cron": self.cron, "timezone": self.timezone, "source": self.source, "due": self.due,
            "dedupe_key": list(self.dedupe_key), "campaign": self.campaign, "enabled": self.enabled,
            "origin_path": self.origin_path,
        }  # fmt: skip
        if self.allowed_root is not None:  # only when set: the hashes of definition files stay as they were
            spec["allowed_root"] = self.allowed_root
        if self.call_list:  # likewise
            spec["call_list"] = self.call_list
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


class DefinitionFileError(Exception):
    """A TOML definition file that cannot be used; ``str()`` names the file and every bad field."""

    def __init__(self, path: Path | str, problems: Sequence[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        super().__init__("\n".join(f"{self.path}: {p}" for p in self.problems))


def _pointer_name(pointer: str) -> str:
    return pointer.strip("/").replace("/", ".") or "(file)"


def file_origin(path: Path) -> str:
    """How a definition file is known: its absolute path as listed, symlinks *not* resolved.

    A Kubernetes ConfigMap volume (deploy/k8s) holds each file as a symlink into a versioned directory that
    every update replaces; its listed path is the one thing that stays the same.
    """
    return os.path.abspath(path)


def inside(path: str, root: str) -> bool:
    """Whether ``path`` lies under ``root``, both with symlinks resolved (a link cannot lead a source out)."""
    try:
        return os.path.commonpath([os.path.realpath(path), os.path.realpath(root)]) == os.path.realpath(root)
    except ValueError:
        return False


def _glob_base(pattern: str) -> str:
    """The directory part of a glob before its first wildcard."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return str(Path(*parts)) if parts else "/"


def validate_definition(
    body: object,
    *,
    now: datetime,
    origin: str,
    base_dir: Path,
    allowed_root: Path | None = None,
    origin_path: str | None = None,
    min_interval_secs: float | None = None,
) -> Definition:
    """Check a definition (all problems at once) and normalize it. Raises ``ValidationFailed`` whose pointers
    name the fields (``/cron``, ``/campaign/retry_interval_secs``…).

    A relative ``source`` is relative to ``base_dir``; with ``allowed_root`` the source must stay inside it
    (definitions created through the API must not read arbitrary files of the server), and the root is stored
    with the definition so that every run enforces it. A schedule firing more often than ``min_interval_secs``
    (default ``CAMPAIGNS_RECURRING_MIN_INTERVAL_SECS``) is refused.
    """
    if not isinstance(body, dict):
        raise ValidationFailed([FieldError("", "a recurring definition must be an object (a TOML table)")])
    errors: list[FieldError] = []

    def bad(name: str, detail: str) -> None:
        errors.append(FieldError(f"/{name}", detail))

    for key in sorted(set(body) - set(DEFINITION_FIELDS)):
        bad(key, f"is not a known field (expected {', '.join(DEFINITION_FIELDS)})")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        bad("name", "is required (a unique name for the definition)")
    elif len(name.strip()) > 200 or "/" in name:
        bad("name", "must be at most 200 characters, without '/'")
    cron = body.get("cron")
    problem = check_cron(cron)
    if problem:
        bad("cron", problem)
    else:
        assert isinstance(cron, str)
        if min_interval_secs is None:
            min_interval_secs = get_settings().recurring_min_interval_secs
        shortest = shortest_interval(cron)
        if shortest.total_seconds() < min_interval_secs:
            bad("cron", f"{cron!r} can fire {_span(shortest)} apart; definitions may run at most once every "
                f"{_span(timedelta(seconds=min_interval_secs))} (CAMPAIGNS_RECURRING_MIN_INTERVAL_SECS)")  # fmt: skip
    zone = body.get("timezone")
    if not windows.is_timezone(zone):
        bad("timezone", f"{zone!r} is not an IANA time zone name such as America/New_York" if zone else
            "is required: the IANA zone the cron expression is read in, e.g. America/New_York")  # fmt: skip
    source = body.get("source")
    resolved_source = ""
    if not isinstance(source, str) or not source.strip():
        bad("source", "is required: a CSV path or glob, e.g. exports/appointments-*.csv")
    else:
        resolved_source = str(Path(base_dir, os.path.expanduser(source.strip())))
        resolved_source = os.path.normpath(resolved_source)
        if allowed_root is not None and not inside(_glob_base(resolved_source), str(allowed_root)):
            bad("source", f"must be inside {allowed_root} (CAMPAIGNS_RECURRING_DIR)")
    due_raw = body.get("due", "now")
    rule: DueRule | None = None
    try:
        rule = parse_due(due_raw)
    except ValueError as exc:
        bad("due", str(exc))
    dedupe = body.get("dedupe_key")
    keys: tuple[str, ...] = ()
    if dedupe is None:
        if rule is not None and rule.column is not None:
            keys = ("phone", rule.column, *((rule.time_column,) if rule.time_column else ()))
        elif rule is not None:
            bad("dedupe_key", 'is required with due = "now": the columns that identify one reminder, '
                'e.g. ["phone", "appointment_id"]')  # fmt: skip
    elif (
        not isinstance(dedupe, list)
        or not dedupe
        or not all(isinstance(k, str) and k.strip() for k in dedupe)
        or len({normalize_header(k) for k in dedupe}) != len(dedupe)
    ):
        bad("dedupe_key", 'must be a non-empty list of distinct column names, e.g. ["phone", "appointment_at"]')
    else:
        keys = tuple(k.strip() for k in dedupe)
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        bad("enabled", "must be true or false")
    template = body.get("campaign")
    if not isinstance(template, dict):
        bad("campaign", "is required: a table of campaign settings (assistant_id, telnyx_agent_target, ...)")
        template = {}
    else:
        for key, why in TEMPLATE_FORBIDDEN.items():
            if key in template:
                bad(f"campaign/{key}", f"cannot be set: it {why}")
        try:
            campaign_service.validate_settings(
                {k: v for k, v in template.items() if k not in TEMPLATE_FORBIDDEN}
                | {"name": name.strip() if isinstance(name, str) and name.strip() else "recurring"},
                now=now,
            )
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    call_list = _list_settings(body, template, bad)
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(name, str) and isinstance(cron, str) and isinstance(zone, str)
    return Definition(
        name=name.strip(),
        cron=" ".join(cron.split()),
        timezone=zone,
        source=resolved_source,
        due=str(due_raw).strip(),
        dedupe_key=keys,
        campaign=dict(template),
        enabled=bool(enabled),
        origin=origin,
        origin_path=origin_path,
        allowed_root=os.path.realpath(allowed_root) if allowed_root is not None else None,
        call_list=call_list,
    )


def _list_settings(
    body: dict[str, Any], template: dict[str, Any], bad: Callable[[str, str], None]
) -> dict[str, Any] | None:
    """The definition's ``mapping``, ``variables``, ``drop_columns`` and ``date_order``, checked as a campaign's
    are (a TOML mapping drops a column with ``"-"``, JSON also with ``null``). Whether the file has the columns
    they name is known only when a run reads it: a run whose file lacks one records the file's error."""
    given = {key: body[key] for key in LIST_FIELDS if key in body}
    for key in sorted(set(given) & set(template)):
        bad(f"campaign/{key}", f"is also set at the top of the definition: set {key} in one place")
    return check_list_settings(given, bad).as_json() or None


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def load_definition_file(path: Path, *, now: datetime) -> Definition:
    """Read and validate one TOML definition. Raises ``DefinitionFileError`` naming the file and fields."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DefinitionFileError(path, [f"cannot be read: {exc.strerror or exc}"]) from None
    try:
        body = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DefinitionFileError(path, ["is not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionFileError(path, [f"invalid TOML: {exc}"]) from None
    try:
        origin_path = file_origin(path)
        return validate_definition(
            body, now=now, origin="file", base_dir=Path(origin_path).parent, origin_path=origin_path
        )
    except ValidationFailed as exc:
        raise DefinitionFileError(path, [f"{_pointer_name(e.pointer)}: {e.detail}" for e in exc.errors]) from None
