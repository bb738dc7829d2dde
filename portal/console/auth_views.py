"""Signing administrators in and out: password, then the second factor (enrolled at the
first sign-in, required ever after), the own account page and the operator's tenant
switcher."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from keydir import admins, web_sessions
from keydir.admin_models import AdminAccount
from keydir.errors import Refused
from keydir.mailbox_errors import WeakPassword
from keydir.models import Tenant
from keydir.tenancy import list_tenants
from portal import i18n, refusals
from portal.console import core
from portal.console.forms import AdminLoginForm, TenantSwitchForm
from portal.forms import ChangePasswordForm, CodeForm, TotpEnableForm

auth = Blueprint("console_auth", __name__, url_prefix="/console")
PENDING = "console_pending"  # password accepted, waiting for the code
PENDING_SECONDS = 300
MAX_CODE_TRIES = 5
TOTP_SETUP = "console_totp_setup"  # the secret being enrolled, until a code proves it
PRODUCT = "sealgate"


def _after_sign_in() -> Response:
    return redirect(core.safe_target(session.pop("console_next", "")))


@auth.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    if core.admin_or_none() is not None:
        return redirect(url_for("console_dashboard.page"))
    form = AdminLoginForm()
    if request.method == "GET" and request.args.get("next"):
        session["console_next"] = request.args["next"]
    if form.validate_on_submit():
        account_id = None
        with core.transaction() as db:
            account = admins.authenticate(db, form.address.data or "",
                                          form.password.data or "", core.now())
            if account is not None:
                account_id, has_totp = account.id, account.totp_sealed is not None
                if not has_totp:
                    core.start_session(db, account, core.now())
        if account_id is None:
            flash(_("The e-mail address or the password is wrong, or the account is locked "
                    "for a quarter of an hour after five wrong passwords."), "error")
        elif not has_totp:
            flash(_("Set up two-step sign-in now: the console requires it."), "info")
            return redirect(url_for("console_auth.totp_setup"))
        else:
            with core.transaction() as db:
                core.end_session(db, core.now())
            session[PENDING] = {"id": account_id, "tries": 0, "at": core.now().timestamp()}
            return redirect(url_for("console_auth.code"))
    return render_template("console/login.html", form=form)


@auth.route("/login/code", methods=["GET", "POST"])
def code() -> str | Response:
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or \
            core.now().timestamp() - float(pending.get("at", 0)) > PENDING_SECONDS:
        session.pop(PENDING, None)
        flash(_("Please sign in again."), "info")
        return redirect(url_for("console_auth.login"))
    form = CodeForm()
    if form.validate_on_submit():
        with core.transaction() as db:
            account = db.get(AdminAccount, int(pending["id"]))
            ok = account is not None and admins.verify_totp(
                core.master_key(), account, form.code.data or "", core.now())
            if ok and account is not None:
                session.pop(PENDING, None)
                core.start_session(db, account, core.now())
        if ok:
            return _after_sign_in()
        pending["tries"] = int(pending.get("tries", 0)) + 1
        if pending["tries"] >= MAX_CODE_TRIES:
            session.pop(PENDING, None)
            flash(_("Too many wrong codes. Please sign in again."), "error")
            return redirect(url_for("console_auth.login"))
        session[PENDING] = pending
        flash(_("That code is not right, or it was used already. Wait for the next code "
                "and check the time on your phone."), "error")
    return render_template("console/code.html", form=form)


@auth.route("/totp", methods=["GET", "POST"])
def totp_setup() -> str | Response:
    """Enrolment of the second factor; the secret waits in the signed session until the
    app proves it has it (the session cookie is signed, not encrypted, but it leaves this
    browser only towards us, over TLS in production)."""
    who = core.admin()
    if who.has_totp:
        return redirect(url_for("console_dashboard.page"))
    secret = session.get(TOTP_SETUP)
    if not isinstance(secret, str) or request.method == "GET":
        secret = admins.new_totp_secret()
        session[TOTP_SETUP] = secret
    form = TotpEnableForm()
    if form.validate_on_submit():
        done = False
        with core.transaction() as db:
            account = db.get(AdminAccount, who.id)
            assert account is not None
            try:
                admins.set_totp(db, core.master_key(), account, secret, core.now(),
                                actor=who.address, code=form.code.data or "")
            except Refused:
                form.code.errors = [*form.code.errors, _(
                    "The code does not match: check the time on your phone and enter the "
                    "code your app shows now.")]
            else:
                done = True
                core.start_session(db, account, core.now())  # the new epoch
        if done:
            session.pop(TOTP_SETUP, None)
            flash(_("Two-step sign-in is on."), "success")
            return _after_sign_in()
    with core.transaction() as db:
        account = db.get(AdminAccount, who.id)
        assert account is not None
        uri = admins.totp_uri(account, secret, PRODUCT)
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return render_template("console/totp_setup.html", form=form, secret=grouped, uri=uri)


@auth.post("/logout")
def logout() -> Response:
    """This session ends, in the database too: a copy of its cookie (a proxy's log, a
    stolen backup) is worthless from now on. Other browsers stay signed in ("sign out
    everywhere" on the account page ends them)."""
    with core.transaction() as db:
        core.end_session(db, core.now())
    flash(_("You are signed out."), "info")
    return redirect(url_for("console_auth.login"))


@auth.route("/account", methods=["GET", "POST"])
def account() -> str | Response:
    """The administrator's own account: password, and ending every other session."""
    who = core.admin()
    form = ChangePasswordForm()
    if form.validate_on_submit():
        changed = False
        with core.transaction() as db:
            row = db.get(AdminAccount, who.id)
            assert row is not None
            try:
                admins.change_password(db, row, form.current.data or "",
                                       form.password.data or "", core.now())
            except WeakPassword as weak:
                form.password.errors = [*form.password.errors, refusals.password(weak)]
            except Refused:
                form.current.errors = [*form.current.errors,
                                       _("The current password is wrong.")]
            else:
                changed = True
                core.start_session(db, row, core.now())
        if changed:
            flash(_("Your new password is set; other sessions are signed out."), "success")
            return redirect(url_for("console_auth.account"))
    with core.transaction() as db:
        sessions = web_sessions.live_sessions(db, web_sessions.CONSOLE, who.id, core.now())
    this = core.current_session_id()
    return render_template("console/account.html", form=form, end_form=core.ActionForm(),
                           active="account", sessions=sessions,
                           this_session=web_sessions.hash_of(this) if this else "")


@auth.post("/account/sessions")
def end_other_sessions() -> Response:
    who = core.admin()
    with core.transaction() as db:
        row = db.get(AdminAccount, who.id)
        assert row is not None
        admins.end_sessions(db, row, core.now())
        core.start_session(db, row, core.now())
    flash(_("Every other session of your account is signed out."), "success")
    return redirect(url_for("console_auth.account"))


@auth.post("/account/sessions/<id_hash>/end")
def end_one_session(id_hash: str) -> Response:
    """End one of the own sessions (a browser left signed in elsewhere)."""
    who = core.admin()
    with core.transaction() as db:
        ended = web_sessions.end_one(db, web_sessions.CONSOLE, who.id, id_hash, core.now())
    if not ended:
        abort(404)
    flash(_("That session is signed out."), "success")
    return redirect(url_for("console_auth.account"))


@auth.post("/tenant")
def switch_tenant() -> Response:
    """An operator narrows the console to one tenant, or widens it to all."""
    core.require_operator()
    form = TenantSwitchForm()
    chosen = (form.tenant.data or "").strip()
    if not chosen:
        core.set_working_tenant(None)
    else:
        with core.transaction() as db:
            tenant = db.get(Tenant, int(chosen)) if chosen.isdigit() else None
            if tenant is None:
                flash(_("That tenant does not exist (any more)."), "error")
            else:
                core.set_working_tenant(tenant.id)
    return redirect(core.safe_target(request.form.get("next")))


@auth.get("/language/<code>")
def language(code: str) -> Response:
    if code in i18n.LANGUAGES:
        session["console_language"] = code
    return redirect(core.safe_target(request.args.get("next")))


def tenant_choices() -> list[tuple[str, str]]:
    """The switcher's options: every tenant (operators only see it)."""
    with core.transaction() as db:
        return [("", _("All tenants"))] + [
            (str(t.id), t.display_name or t.name) for t in list_tenants(db)]
