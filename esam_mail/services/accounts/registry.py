"""State-registry verification of applicants (pure: no network).

Para. 13 of the rules (seed ``000_254da2b4eae80a4d``): users are identified by
IIN/BIN, and "to confirm user data, the National postal operator gets access to
the state databases of individuals and legal entities" (GBD FL / GBD UL via the
e-government gateway, domain.md section 3).  That gateway needs an agreement
and has no sandbox, so this module defines the seam and two implementations:

* :class:`OfflineRegistry`: structural checks only; it reports ``MISMATCH`` when
  the declared data contradicts the IIN/BIN itself and otherwise
  ``UNAVAILABLE``.  It **never** answers ``MATCH``: it cannot see the registry.
* :class:`FileRegistry`: a local CSV/JSON extract of persons and entities.

:func:`decide` turns a :class:`Verdict` and the operator's
:class:`RegistryPolicy` into a :class:`Decision` for the registration service.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from esam_mail.errors import ConfigError, ValidationError
from esam_mail.services.accounts.application import IndividualApplication, LegalEntityApplication
from esam_mail.services.accounts.identity import M_, Sex, validate_bin, validate_iin

__all__ = [
    "Decision",
    "EntityQuery",
    "FileRegistry",
    "OfflineRegistry",
    "PersonQuery",
    "RegistryAnswer",
    "RegistryPolicy",
    "StateRegistry",
    "Verdict",
    "decide",
    "normalize_for_match",
]


class Verdict(Enum):
    """What a state registry says about an applicant (domain.md section 3)."""

    MATCH = "match"  # found, alive/active, declared data agrees
    MISMATCH = "mismatch"  # declared data contradicts the record (or the number itself)
    NOT_FOUND = "not_found"  # no such IIN/BIN in the registry
    DECEASED = "deceased"  # the person is recorded as dead
    INACTIVE = "inactive"  # the entity is liquidated, suspended, ...
    UNAVAILABLE = "unavailable"  # cannot tell: offline, timeout, no access


@dataclass(frozen=True, slots=True)
class PersonQuery:
    """The declared data of an individual to check (IIN plus names)."""

    iin: str
    surname: str
    given_name: str
    patronymic: str | None = None
    birth_date: date | None = None
    sex: Sex | None = None

    @classmethod
    def from_application(cls, app: IndividualApplication) -> PersonQuery:
        """The query for a validated individual application."""
        return cls(app.iin, app.surname, app.given_name, app.patronymic, app.birth_date, app.sex)


@dataclass(frozen=True, slots=True)
class EntityQuery:
    """The declared data of a legal entity; ``head_iin`` is the representative."""

    bin: str
    name: str | None = None
    head_iin: str | None = None

    @classmethod
    def from_application(cls, app: LegalEntityApplication) -> EntityQuery:
        """The query for a validated legal-entity application."""
        head = app.representative.iin if app.representative else None
        return cls(app.bin, app.name, head)


@dataclass(frozen=True, slots=True)
class RegistryAnswer:
    """A verdict, a human reason (for the audit log and the employee) and the
    registry's record as a plain dict (empty when there is none)."""

    verdict: Verdict
    reason: str
    record: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class StateRegistry(Protocol):
    """A source of truth about persons and entities (para. 13).

    Implementations never raise for "not found" or "contradicts": those are
    verdicts.  A transport failure is ``UNAVAILABLE``.
    """

    def verify_person(self, q: PersonQuery) -> RegistryAnswer: ...

    def verify_entity(self, q: EntityQuery) -> RegistryAnswer: ...


# --------------------------------------------------------------------------
# Offline
# --------------------------------------------------------------------------


def _structural_person(q: PersonQuery, allow_unusual_century: bool) -> RegistryAnswer | None:
    """MISMATCH if the IIN is invalid or contradicts the declared birth date/sex."""
    try:
        parsed = validate_iin(q.iin, allow_unusual_century=allow_unusual_century)
    except ValidationError as e:
        return RegistryAnswer(Verdict.MISMATCH, e.message)
    born = parsed.birth_date
    if q.birth_date is not None and born is not None and q.birth_date != born:
        return RegistryAnswer(
            Verdict.MISMATCH, f"declared birth date {q.birth_date} contradicts the IIN ({born})"
        )
    if q.sex is not None and parsed.sex is not None and q.sex != parsed.sex:
        return RegistryAnswer(Verdict.MISMATCH, f"declared sex {q.sex} contradicts the IIN ({parsed.sex})")
    return None


def _structural_entity(q: EntityQuery) -> RegistryAnswer | None:
    """MISMATCH if the BIN (or the head's IIN) is not a valid number."""
    try:
        validate_bin(q.bin)
        if q.head_iin is not None:
            validate_iin(q.head_iin, field="head_iin", allow_unusual_century=True)
    except ValidationError as e:
        return RegistryAnswer(Verdict.MISMATCH, e.message)
    return None


class OfflineRegistry:
    """Structural checks only; never claims a MATCH it cannot see (R6)."""

    def __init__(self, *, allow_unusual_century: bool = False) -> None:
        self.allow_unusual_century = allow_unusual_century

    def verify_person(self, q: PersonQuery) -> RegistryAnswer:
        bad = _structural_person(q, self.allow_unusual_century)
        if bad is not None:
            return bad
        return RegistryAnswer(Verdict.UNAVAILABLE, "no state registry configured (offline check)")

    def verify_entity(self, q: EntityQuery) -> RegistryAnswer:
        bad = _structural_entity(q)
        if bad is not None:
            return bad
        return RegistryAnswer(Verdict.UNAVAILABLE, "no state registry configured (offline check)")


# --------------------------------------------------------------------------
# File extract
# --------------------------------------------------------------------------

_DASHES = {ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2212"}
_QUOTES = {ord(c): None for c in "\"'«»“”„‘’`"}


def normalize_for_match(text: str | None, *, yo_equals_ye: bool = True) -> str:
    """Normalise a name for comparison (domain.md section 3).

    NFC, case-folded, blanks collapsed, dash variants as ``-``; Kazakh
    letters (ә ғ қ ң ө ұ ү һ і) are kept as they are.  With ``yo_equals_ye``
    ``ё`` compares equal to ``е``.
    """
    if not text:
        return ""
    s = unicodedata.normalize("NFC", text).casefold()
    if yo_equals_ye:
        s = s.replace("ё", "е")
    s = s.translate(_DASHES)
    return " ".join(s.split())


def _normalize_entity_name(text: str | None, *, yo_equals_ye: bool) -> str:
    """As :func:`normalize_for_match`, also ignoring quote marks («ТОО "A"»)."""
    return normalize_for_match((text or "").translate(_QUOTES), yo_equals_ye=yo_equals_ye)


_ALIVE = frozenset({"", "alive", "normal", "active", "0"})
_DEAD = frozenset({"deceased", "dead", "died"})
_ACTIVE = frozenset({"", "active", "registered", "operating"})
_INACTIVE = frozenset(
    {"inactive", "liquidated", "suspended", "bankrupt", "closed", "reorganized", "reorganised"}
)
_PERSON_COLUMNS = ("iin", "surname", "given_name", "patronymic", "birth_date", "life_status")
_ENTITY_COLUMNS = ("bin", "name", "status", "head_iin")


class FileRegistry:
    """A local extract of the state databases, in CSV or JSON.

    JSON: ``{"persons": [{iin, surname, given_name, patronymic, birth_date,
    life_status}], "entities": [{bin, name, status, head_iin}]}``.  CSV: one
    file per kind with a header row; a header with ``iin`` and ``surname`` is
    a persons file, one with ``bin`` an entities file.  Several files may be
    given.  ``life_status``: ``alive``/``normal``/``0``/empty or
    ``deceased``/``dead``; ``status``: ``active``/empty or ``liquidated``,
    ``inactive``, ``suspended``, ...  Anything else is a configuration error
    raised at load time, with every problem listed.

    Args:
        paths: one or more files (``.json`` or ``.csv``).
        yo_equals_ye: compare ``ё`` as ``е``.
        allow_unusual_century: passed to the structural IIN check.
    """

    def __init__(
        self,
        *paths: str | Path,
        yo_equals_ye: bool = True,
        allow_unusual_century: bool = False,
    ) -> None:
        if not paths:
            raise ConfigError(["registry.path: at least one file is required"])
        self.yo_equals_ye = yo_equals_ye
        self.allow_unusual_century = allow_unusual_century
        self.persons: dict[str, dict[str, str]] = {}
        self.entities: dict[str, dict[str, str]] = {}
        problems: list[str] = []
        for p in paths:
            self._load(Path(p), problems)
        if problems:
            raise ConfigError(problems)

    # -- loading -------------------------------------------------------------

    def _load(self, path: Path, problems: list[str]) -> None:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{path}: cannot read ({e.__class__.__name__})")
            return
        if path.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                problems.append(f"{path}: invalid JSON (line {e.lineno})")
                return
            if not isinstance(data, dict):
                problems.append(f"{path}: expected an object with 'persons' and 'entities'")
                return
            for kind in ("persons", "entities"):
                rows = data.get(kind, [])
                if not isinstance(rows, list):
                    problems.append(f"{path}: '{kind}' must be a list")
                    continue
                for i, row in enumerate(rows, 1):
                    self._add(kind, row, f"{path}: {kind}[{i}]", problems)
            return
        reader = csv.DictReader(text.splitlines())
        header = {h.strip().lower() for h in (reader.fieldnames or [])}
        if {"iin", "surname"} <= header:
            kind = "persons"
        elif "bin" in header:
            kind = "entities"
        else:
            problems.append(f"{path}: CSV header needs 'iin,surname,...' or 'bin,name,...'")
            return
        for line_no, row in enumerate(reader, 2):
            clean = {(k or "").strip().lower(): v for k, v in row.items()}
            self._add(kind, clean, f"{path}:{line_no}", problems)

    def _add(self, kind: str, row: object, where: str, problems: list[str]) -> None:
        if not isinstance(row, dict):
            problems.append(f"{where}: expected an object")
            return
        columns = _PERSON_COLUMNS if kind == "persons" else _ENTITY_COLUMNS
        rec = {c: ("" if row.get(c) is None else str(row.get(c)).strip()) for c in columns}
        if kind == "persons":
            key, status, allowed = rec["iin"], rec["life_status"].lower(), _ALIVE | _DEAD
            table = self.persons
            if rec["birth_date"]:
                try:
                    date.fromisoformat(rec["birth_date"])
                except ValueError:
                    problems.append(f"{where}: birth_date must be YYYY-MM-DD")
        else:
            key, status, allowed = rec["bin"], rec["status"].lower(), _ACTIVE | _INACTIVE
            table = self.entities
        if len(key) != 12 or not key.isdigit():
            problems.append(f"{where}: {columns[0]} must be 12 digits")
            return
        if status not in allowed:
            problems.append(f"{where}: unknown status {status!r}")
            return
        needed = ("surname", "given_name") if kind == "persons" else ("name",)
        missing = [c for c in needed if not rec[c]]
        if missing:
            problems.append(f"{where}: {', '.join(missing)} required")
            return
        if key in table:
            problems.append(f"{where}: duplicate {columns[0]} {key}")
            return
        table[key] = rec

    # -- matching ------------------------------------------------------------

    def _same(self, a: str | None, b: str | None) -> bool:
        return normalize_for_match(a, yo_equals_ye=self.yo_equals_ye) == normalize_for_match(
            b, yo_equals_ye=self.yo_equals_ye
        )

    def verify_person(self, q: PersonQuery) -> RegistryAnswer:
        """NOT_FOUND, DECEASED, MISMATCH (first differing field named) or MATCH.

        The patronymic is compared only when the applicant declared one.
        """
        bad = _structural_person(q, self.allow_unusual_century)
        if bad is not None:
            return bad
        rec = self.persons.get(q.iin)
        if rec is None:
            return RegistryAnswer(Verdict.NOT_FOUND, "IIN not found in the registry extract")
        record = dict(rec)
        if rec["life_status"].lower() in _DEAD:
            return RegistryAnswer(Verdict.DECEASED, "the person is recorded as deceased", record)
        if not self._same(q.surname, rec["surname"]):
            return RegistryAnswer(Verdict.MISMATCH, "surname differs from the registry", record)
        if not self._same(q.given_name, rec["given_name"]):
            return RegistryAnswer(Verdict.MISMATCH, "given name differs from the registry", record)
        if q.patronymic and not self._same(q.patronymic, rec["patronymic"]):
            return RegistryAnswer(Verdict.MISMATCH, "patronymic differs from the registry", record)
        registered = date.fromisoformat(rec["birth_date"]) if rec["birth_date"] else None
        if q.birth_date is not None and registered is not None and registered != q.birth_date:
            return RegistryAnswer(Verdict.MISMATCH, "birth date differs from the registry", record)
        return RegistryAnswer(Verdict.MATCH, "matches the registry extract", record)

    def verify_entity(self, q: EntityQuery) -> RegistryAnswer:
        """NOT_FOUND, INACTIVE, MISMATCH (name or head's IIN) or MATCH.

        Names are compared ignoring quote marks; ``head_iin`` only when both
        sides have one.
        """
        bad = _structural_entity(q)
        if bad is not None:
            return bad
        rec = self.entities.get(q.bin)
        if rec is None:
            return RegistryAnswer(Verdict.NOT_FOUND, "BIN not found in the registry extract")
        record = dict(rec)
        if rec["status"].lower() in _INACTIVE:
            return RegistryAnswer(Verdict.INACTIVE, f"the entity is not active ({rec['status']})", record)
        if q.name is not None:
            ours = _normalize_entity_name(q.name, yo_equals_ye=self.yo_equals_ye)
            theirs = _normalize_entity_name(rec["name"], yo_equals_ye=self.yo_equals_ye)
            if ours != theirs:
                return RegistryAnswer(Verdict.MISMATCH, "name differs from the registry", record)
        if q.head_iin and rec["head_iin"] and q.head_iin != rec["head_iin"]:
            return RegistryAnswer(Verdict.MISMATCH, "the representative is not the registered head", record)
        return RegistryAnswer(Verdict.MATCH, "matches the registry extract", record)


# --------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------


class RegistryPolicy(Enum):
    """What to do when the registry cannot tell (``UNAVAILABLE``).

    ``REJECT``: refuse the application.  ``HOLD``: keep it pending a manual
    check (no mailbox yet).  ``ACCEPT``: register now and rely on the
    employee having seen the document (paper channel, para. 6 sub-para. 2)
    or on the EDS (online channel, para. 6 sub-para. 1).
    """

    REJECT = "reject"
    HOLD = "hold"
    ACCEPT = "accept"


@dataclass(frozen=True, slots=True)
class Decision:
    """At most one of ``accept``/``hold`` is true; neither means rejected."""

    accept: bool
    hold: bool
    reason: str

    @property
    def outcome(self) -> str:
        """``accept``, ``hold`` or ``reject``."""
        return "accept" if self.accept else "hold" if self.hold else "reject"


_NEGATIVE = {
    Verdict.MISMATCH: M_("the declared data does not match the state registry"),
    Verdict.NOT_FOUND: M_("the identification number is not in the state registry"),
    Verdict.DECEASED: M_("the state registry records the person as deceased"),
    Verdict.INACTIVE: M_("the state registry records the entity as not active"),
}


def decide(verdict: Verdict, policy: RegistryPolicy) -> Decision:
    """Turn a verdict into a decision (para. 13).

    ``MATCH`` always accepts; ``MISMATCH``, ``NOT_FOUND``, ``DECEASED`` and
    ``INACTIVE`` always reject (they are the registry's positive knowledge);
    only ``UNAVAILABLE`` follows ``policy``.
    """
    if verdict is Verdict.MATCH:
        return Decision(True, False, M_("confirmed by the state registry"))
    if verdict in _NEGATIVE:
        return Decision(False, False, _NEGATIVE[verdict])
    if policy is RegistryPolicy.ACCEPT:
        return Decision(True, False, M_("state registry unavailable; accepted by policy"))
    if policy is RegistryPolicy.HOLD:
        return Decision(False, True, M_("state registry unavailable; held for a manual check"))
    return Decision(False, False, M_("state registry unavailable; rejected by policy"))
