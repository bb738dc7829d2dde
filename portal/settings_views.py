"""The recipient's settings: language, password, two-step sign-in, devices, certificate."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import login_required, login_user, logout_user
from werkzeug.wrappers import Response

from keydir import mailbox, web_sessions
from keydir.models import Certificate
from portal import auth_views, context, refusals
from portal.forms import (
    ActionForm,
    CertificateForm,
    ChangePasswordForm,
    LanguageForm,
    TotpDisableForm,
    TotpEnableForm,
)

settings = Blueprint("portal_settings", __name__, url_prefix="/portal/settings")

TOTP_SETUP = "portal_totp_setup"  # the secret being set up, until a code proves the app has it
MAX_CERTIFICATE = 64 * 1024


def _page(**forms: object) -> str:
    with context.transaction() as db:
        account = context.account(db)
        certificate = db.get(Certificate, account.smime_certificate_id) \
            if account.smime_certificate_id else None
        # Not chosen yet: the language these pages speak now (browser, else the tenant's).
        language = account.language or str(get_locale() or "") or \
            mailbox.policy(db, account.tenant_id).default_language
        has_totp = account.has_totp
        cert_info = None if certificate is None else {
            "fingerprint": certificate.fingerprint, "not_after": certificate.not_after}
        devices = web_sessions.live_sessions(db, web_sessions.PORTAL, account.id,
                                             context.now())
    this_device = web_sessions.hash_of(context.signed_in().sid)
    language_form = forms.pop("language_form", None) or LanguageForm(language=language)
    return render_template(
        "portal/settings.html", language_form=language_form,
        password_form=forms.pop("password_form", None) or ChangePasswordForm(),
        totp_off_form=forms.pop("totp_off_form", None) or TotpDisableForm(),
        everywhere_form=ActionForm(),
        certificate_form=forms.pop("certificate_form", None) or CertificateForm(),
        has_totp=has_totp, certificate=cert_info, devices=devices, this_device=this_device,
        brand=context.load_brand())


@settings.get("")
@login_required
def page() -> str:
    return _page()


@settings.post("/language")
@login_required
def language() -> str | Response:
    form = LanguageForm()
    if not form.validate_on_submit():
        return _page(language_form=form)
    with context.transaction() as db:
        mailbox.set_language(db, context.account(db), form.language.data or "en")
    _relogin()
    flash(_("Language saved."), "success")
    return redirect(url_for("portal_settings.page"))


def _relogin() -> None:
    """Load the account afresh into this session (its language changed)."""
    sid = context.signed_in().sid
    with context.transaction() as db:
        user = context.PortalUser.of(context.account(db), sid)
    login_user(user)


@settings.post("/password")
@login_required
def password() -> str | Response:
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        return _page(password_form=form)
    user = None
    with context.transaction() as db:
        account = context.account(db)
        try:
            # Counts as a sign-in attempt: a stolen session cannot guess the password.
            mailbox.authenticate(db, account.address, form.current.data or "",
                                 context.now(), account.tenant_id)
            mailbox.set_password(db, account, form.password.data or "", context.now())
            # Every session ended with the new password; this browser goes on in a new one.
            sid = web_sessions.open_session(db, web_sessions.PORTAL, account.id,
                                            context.now(), auth_views.BROWSER_SESSION)
            user = context.PortalUser.of(account, sid)
        except mailbox.AccountLocked as locked:
            form.current.errors = [*form.current.errors, str(locked)]
        except mailbox.LoginFailed:
            form.current.errors = [*form.current.errors,
                                   _("The current password is not right.")]
        except mailbox.WeakPassword as weak:
            form.password.errors = [*form.password.errors, refusals.password(weak)]
    if user is None:
        return _page(password_form=form)
    # The new epoch signs out every other device; this one continues in a new session.
    session.clear()
    login_user(user)
    flash(_("Your new password is set. Other devices have been signed out."), "success")
    return redirect(url_for("portal_settings.page"))


@settings.route("/totp", methods=["GET", "POST"])
@login_required
def totp_setup() -> str | Response:
    secret = session.get(TOTP_SETUP)
    if request.method == "GET" or not isinstance(secret, str):
        secret = mailbox.new_totp_secret()
        session[TOTP_SETUP] = secret
    form = TotpEnableForm()
    if request.method == "POST" and form.validate_on_submit():
        with context.transaction() as db:
            try:
                mailbox.enable_totp(db, context.master_key(), context.account(db), secret,
                                    (form.code.data or "").strip(), context.now())
            except mailbox.CodeInvalid:
                form.code.errors = [*form.code.errors, _(
                    "That code is not right. Check the time on your phone and enter the "
                    "code your app shows now.")]
            else:
                session.pop(TOTP_SETUP, None)
                flash(_("Two-step sign-in is on."), "success")
                return redirect(url_for("portal_settings.page"))
    with context.transaction() as db:
        uri = mailbox.totp_uri(context.account(db), secret, context.load_brand().name)
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return render_template("portal/totp_setup.html", form=form, secret=grouped, uri=uri,
                           brand=context.load_brand())


@settings.post("/totp/off")
@login_required
def totp_off() -> str | Response:
    form = TotpDisableForm()
    if not form.validate_on_submit():
        return _page(totp_off_form=form)
    with context.transaction() as db:
        account = context.account(db)
        right = mailbox.verify_totp(context.master_key(), account,
                                    (form.code.data or "").strip(), context.now())
        if right:
            mailbox.disable_totp(db, account)
    if not right:
        form.code.errors = [*form.code.errors, _("That code is not right.")]
        return _page(totp_off_form=form)
    flash(_("Two-step sign-in is off."), "success")
    return redirect(url_for("portal_settings.page"))


@settings.post("/logout-everywhere")
@login_required
def logout_everywhere() -> Response:
    if ActionForm().validate_on_submit():
        with context.transaction() as db:
            mailbox.log_out_everywhere(db, context.account(db), context.now())
        logout_user()
        session.clear()
        flash(_("You are signed out on all devices, this one included."), "success")
        return redirect(url_for("portal_auth.login"))
    return redirect(url_for("portal_settings.page"))


@settings.post("/sessions/<id_hash>/end")
@login_required
def end_device(id_hash: str) -> Response:
    """Sign out one other device (its sessions listed under Devices)."""
    if ActionForm().validate_on_submit():
        with context.transaction() as db:
            ended = web_sessions.end_one(db, web_sessions.PORTAL, context.signed_in().account_id,
                                         id_hash, context.now())
        if not ended:
            abort(404)
        flash(_("That device is signed out."), "success")
    return redirect(url_for("portal_settings.page"))


@settings.post("/certificate")
@login_required
def certificate() -> str | Response:
    form = CertificateForm()
    if not form.validate_on_submit():
        return _page(certificate_form=form)
    content = form.certificate.data.read(MAX_CERTIFICATE + 1)
    if len(content) > MAX_CERTIFICATE:
        form.certificate.errors = [*form.certificate.errors,
                                   _("This file is too large for a certificate.")]
        return _page(certificate_form=form)
    refused = None
    with context.transaction() as db:
        try:
            mailbox.upload_certificate(db, context.account(db), content, context.now())
        except mailbox.CertificateRefused as error:
            refused = refusals.certificate(error)
    if refused is not None:
        form.certificate.errors = [*form.certificate.errors, refused]
        return _page(certificate_form=form)
    flash(_("Your certificate is saved: from now on, mail to you is encrypted with it "
            "and comes straight to your mailbox."), "success")
    return redirect(url_for("portal_settings.page"))
