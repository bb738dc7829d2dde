"""White label in the console: a tenant's (or, for operators, a reseller's) name, colours,
logo, portal host and notification texts, with a preview of the portal's top bar and of
the notification mail.

Tenant administrators see their own tenant's branding only; an operator sees the working
tenant's (top bar switcher) and reaches a reseller's from the tenants page. The preview's
colours come from a small stylesheet per brand: the console's policy allows no inline
style.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from keydir import branding, mailbox, portal_notice, resellers
from keydir.errors import Conflict, Refused
from keydir.mailbox_models import LANGUAGES
from keydir.models import Reseller, Tenant
from portal.console import core
from portal.console.branding_forms import LANGUAGE_LABELS, BrandingForm

branding_pages = Blueprint("console_branding", __name__, url_prefix="/console/branding")
SAMPLE = {"sender": "Alice Example <alice@example.com>", "sender_short": "Alice Example",
          "subject": "Quarterly report", "registered": False,
          "sender_password": False, "register_days": mailbox.REGISTER_VALIDITY.days,
          "retention_days": 90}


@dataclass(frozen=True)
class Target:
    """The tenant or reseller whose branding a request shows, with its URLs."""

    kind: str  # "tenant" or "reseller"
    id: int
    label: str

    def url(self, endpoint: str, **values: object) -> str:
        return url_for(f"console_branding.{endpoint}", kind=self.kind, owner_id=self.id,
                       **values)


def _owner(db: Session, kind: str, owner_id: int) -> branding.Owner:
    """The brand's owner in scope: another tenant's is "not found", a reseller's is for
    operators only."""
    if kind == "tenant":
        core.visible(owner_id)
        tenant = db.get(Tenant, owner_id)
        if tenant is None:
            abort(404)
        return branding.Owner(tenant=tenant)
    if kind == "reseller":
        core.require_operator()
        reseller = db.get(Reseller, owner_id)
        if reseller is None:
            abort(404)
        return branding.Owner(reseller=reseller)
    abort(404)


def _look(db: Session, owner: branding.Owner) -> branding.EffectiveBrand:
    if owner.tenant is not None:
        return branding.effective(db, owner.tenant)
    assert owner.reseller is not None
    return branding.of_reseller(db, owner.reseller)


@branding_pages.get("/")
def page() -> str | Response:
    """The working tenant's branding; without one (operator, every tenant) a chooser."""
    tenant_id = core.scope_tenant_id()
    if tenant_id is not None:
        return redirect(url_for("console_branding.edit", kind="tenant", owner_id=tenant_id))
    core.require_operator()
    with core.transaction() as db:
        tenants = [(t.id, t.display_name or t.name) for t in
                   db.query(Tenant).order_by(Tenant.name)]
        partners = [(r.id, r.display_name or r.name, n)
                    for r, n in resellers.list_resellers(db)]
    return render_template("console/branding_choose.html", active="branding",
                           tenants=tenants, resellers=partners)


@branding_pages.route("/<kind>/<int:owner_id>", methods=["GET", "POST"])
def edit(kind: str, owner_id: int) -> str | Response:
    form = BrandingForm()
    with core.transaction() as db:
        owner = _owner(db, kind, owner_id)
        profile = branding.profile_of(db, owner)
        if request.method == "GET" and profile is not None:
            form.name.data, form.color.data = profile.name, profile.color
            form.text_color.data = profile.text_color
            form.portal_host.data = profile.portal_host or ""
            for language in LANGUAGES:
                form[f"intro_{language}"].data = (profile.notice_intros or {}).get(language, "")
    if form.validate_on_submit() and _save(form, kind, owner_id):
        flash(_("Branding saved."), "success")
        return redirect(url_for("console_branding.edit", kind=kind, owner_id=owner_id,
                                language=request.args.get("language")))
    return _render(form, kind, owner_id)


def _save(form: BrandingForm, kind: str, owner_id: int) -> bool:
    """Everything or nothing: a refused logo keeps the other changes from being saved too
    (the form still shows what was typed)."""
    upload = form.logo.data
    data = upload.read(branding.MAX_LOGO + 1) if upload and upload.filename else b""
    try:
        with core.transaction() as db:
            owner = _owner(db, kind, owner_id)
            at, actor = core.now(), core.actor()
            branding.change(db, owner, form.changes(with_host=owner.tenant is not None), at,
                            actor)
            if data:
                branding.set_logo(db, owner, data, at, actor)
            elif form.remove_logo.data:
                branding.remove_logo(db, owner, at, actor)
    except branding.BrandingRefused as exc:
        form[form.field_for(exc.field)].errors = [str(exc)]
    except Conflict as exc:  # the host is another tenant's
        form.portal_host.errors = [str(exc)]
    except Refused as exc:
        flash(_("Not saved: %(why)s.", why=str(exc)), "error")
    else:
        return True
    return False


def _render(form: BrandingForm, kind: str, owner_id: int) -> str:
    language = request.args.get("language", "")
    with core.transaction() as db:
        owner = _owner(db, kind, owner_id)
        look = _look(db, owner)
        profile = branding.profile_of(db, owner)
        tenant = owner.tenant
        default_language = mailbox.policy(db, tenant.id).default_language if tenant else "en"
        inherited_from = resellers.reseller_of(db, tenant) if tenant else None
        label = (tenant.display_name or tenant.name) if tenant else \
            (owner.reseller.display_name or owner.reseller.name)  # type: ignore[union-attr]
        public_url = core.directory().config.web.public_url
    language = language if language in LANGUAGES else default_language
    base = branding.portal_base(public_url, look.portal_host)
    subject, text = portal_notice.preview(
        "notification", language, branding=portal_notice.Branding(
            name=look.name, color=look.color, text_color=look.text_color,
            intros=dict(look.notice_intros)),
        link=f"{base}/portal/register/…", login=f"{base}/portal/login", **SAMPLE)
    target = Target(kind, owner_id, label)
    if owner.reseller is not None:
        del form.portal_host
    return render_template(
        "console/branding.html", active="branding", form=form, target=target, look=look,
        has_own_logo=bool(profile and profile.logo_type), inherited_from=inherited_from,
        languages=LANGUAGES, language_labels=LANGUAGE_LABELS, language=language,
        preview_subject=subject, preview_text=text, portal_base=base,
        public_url=public_url.rstrip("/"))


@branding_pages.get("/<kind>/<int:owner_id>/preview.css")
def preview_css(kind: str, owner_id: int) -> Response:
    """The preview's colours: a stylesheet, because the page allows no inline style."""
    with core.transaction() as db:
        look = _look(db, _owner(db, kind, owner_id))
    css = (f".brand-preview{{--preview-brand:{look.color};"
           f"--preview-text:{look.text_color}}}\n")
    return Response(css, mimetype="text/css")


@branding_pages.get("/<kind>/<int:owner_id>/logo")
def logo(kind: str, owner_id: int) -> Response:
    """The logo this brand shows (its own or its reseller's), for the preview."""
    with core.transaction() as db:
        look = _look(db, _owner(db, kind, owner_id))
        found = branding.logo(db, look.logo_profile_id) if look.logo_profile_id else None
    if found is None:
        abort(404)
    data, content_type = found
    response = Response(data, mimetype=content_type)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
