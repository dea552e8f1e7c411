"""``/staff/register``: a post-office employee enters a paper application (rules, para. 6 sub-para. 2).

The same fields as ``esam register individual|legal-entity`` and the same service call
(:class:`~esam_mail.services.accounts.registration.RegistrationService`, channel ``office``); the
signed-in staff account is the employee and its office the office (an employee is bound
to their own office; a supervisor or administrator names it).  Every problem stands under
its own field in the reader's language (:func:`esam_mail.web.form_errors.localize`);
nothing is written when there is one.  On success: the address, the password shown once,
and the printable pre-filled application (PDF) to sign.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse

from esam_mail.errors import LoginTaken, ValidationError
from esam_mail.services.accounts.staff import PERMISSIONS, RoleRefused, StaffRecord
from esam_mail.web.eds import WM_
from esam_mail.web.form_errors import localize
from esam_mail.web.i18n import lang_of
from esam_mail.web.security import read_form
from esam_mail.web.server import Request, Response, Router
from esam_mail.web.staff import signed_in, staff_service
from esam_mail.web.templating import render

__all__ = ["FIELDS", "register"]

_ADDRESS = ("region", "locality", "street", "house", "apartment", "postcode")

#: The dotted fields of each form, as the CLI's flags (cli/registration.py) name them.
FIELDS: dict[str, tuple[str, ...]] = {
    "individual": (
        "surname", "given_name", "patronymic", "iin", "birth_date", "sex",
        "id_document.type", "id_document.number", "id_document.issuer", "id_document.issue_date",
        "id_document.expiry_date", *(f"residence_address.{k}" for k in _ADDRESS),
        "home_phone", "mobile_phone", "username",
    ),
    "legal_entity": (
        "name", "bin", "registration.number", "registration.date", "registration.issuer",
        *(f"legal_address.{k}" for k in _ADDRESS), *(f"actual_address.{k}" for k in _ADDRESS),
        "work_phone", "mobile_phone", "username",
        "representative.surname", "representative.given_name", "representative.patronymic", "representative.iin",
        "signer_role", "poa_number", "poa_date",
    ),
}
_PARTS = {"individual": ("id_document", "residence_address"),
          "legal_entity": ("registration", "legal_address", "actual_address")}
LANGUAGES = ("kk", "ru", "en")
MAX_VALUE = 500


def application_from_form(kind: str, form: FormData) -> tuple[dict[str, Any], dict[str, str]]:
    """The raw application (empty fields left out, so the validator names them) and the
    values to show again."""
    raw: dict[str, Any] = {part: {} for part in _PARTS[kind]}
    values: dict[str, str] = {}
    for dotted in FIELDS[kind]:
        value = str(form.get(dotted, "") or "")[:MAX_VALUE].strip()
        values[dotted] = value
        if not value:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw, values


def register(router: Router, services: Any) -> None:
    staff = staff_service(services)

    def may(rec: StaffRecord, action: str) -> bool:
        return rec.active and rec.role in PERMISSIONS.get(action, frozenset())

    def page(request: Request, rec: StaffRecord, ctx: dict[str, Any], status: int = 200) -> Response:
        return render(request, "staff_register.html", {
            "staff": rec, "can": lambda a: may(rec, a), "domain": services.cfg.mail.domain,
            "agreement_version": services.cfg.registration.agreement_version, "languages": LANGUAGES, **ctx,
        }, status=status)

    async def allowed(request: Request) -> StaffRecord | Response:
        rec = await signed_in(staff, request)
        if rec is None:
            return RedirectResponse("/staff/login", status_code=303)
        try:
            staff.require(rec, "application.register")
        except RoleRefused as exc:
            await services.directory.audit(*rec.actor, "application.register", "staff/register", "denied",
                                           why=exc.public)
            raise HTTPException(403) from None
        return rec

    def kind_of(value: Any) -> str:
        return value if value in FIELDS else "individual"

    async def form_page(request: Request) -> Response:
        rec = await allowed(request)
        if not isinstance(rec, StaffRecord):
            return rec
        return page(request, rec, {"kind": kind_of(request.query_params.get("kind")), "values": {},
                                   "errors": {}, "office": rec.office_code or "", "language": lang_of(request)})

    async def submit(request: Request) -> Response:
        if await signed_in(staff, request) is None:
            return RedirectResponse("/staff/login", status_code=303)
        form = await read_form(request)  # CSRF before anything else
        rec = await allowed(request)
        if not isinstance(rec, StaffRecord):
            return rec
        from esam_mail.services.accounts.notices import Notices
        from esam_mail.services.accounts.registration import RegistrationService

        kind = kind_of(form.get("kind"))
        raw, values = application_from_form(kind, form)
        # an employee registers at their own office; a supervisor or administrator names it
        office = rec.office_code if rec.role == "employee" else str(form.get("office", "")).strip()[:32]
        chosen = str(form.get("language", ""))
        language = chosen if chosen in LANGUAGES else None
        accepted = str(form.get("accept_agreement", "")).strip()[:64] or None
        lang = lang_of(request)
        errors: dict[str, str] = {}
        try:
            staff.require(rec, "application.register", office_code=office or None)
            service = RegistrationService(services.directory, services.store, services.hasher, services.cfg,
                                          notices=Notices.from_services(services))
            do = service.register_individual if kind == "individual" else service.register_legal_entity
            done = await do(raw, channel="office", office_code=office or None, employee_id=rec.username,
                            accepted_agreement=accepted, password=None, language=language)
        except RoleRefused:
            raise HTTPException(403) from None
        except LoginTaken:
            errors["username"] = localize(ValidationError("username", WM_("this user name was issued before and is never issued again")), lang)
        except ValidationError as exc:
            for item in getattr(exc, "errors", None) or (exc,):
                errors.setdefault(item.field, localize(item, lang))
        if errors:
            return page(request, rec, {"kind": kind, "values": values, "errors": errors, "office": office,
                                       "language": language or lang}, status=400)
        return render(request, "staff_registered.html", {
            "staff": rec, "can": lambda a: may(rec, a), "done": done}, headers={"cache-control": "no-store"})

    router.add("GET", "/staff/register", form_page)
    router.add("POST", "/staff/register", submit)
