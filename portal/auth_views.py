"""Signing in and out, registering through the notification's link, resetting a password.

No page tells whether an address has an account: a wrong password, an unknown address and
a reset request for a stranger all look alike. Every successful sign-in starts a new
session (nothing from before it survives, so a planted session id is worthless).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from keydir import mailbox, web_sessions
from keydir.mailbox_models import PortalAccount
from keydir.models import Tenant
from portal import context, i18n, refusals
from portal.forms import ActionForm, CodeForm, LoginForm, RegisterForm, ResetRequestForm

auth = Blueprint("portal_auth", __name__, url_prefix="/portal")

# How long a sign-in without "stay signed in" is valid at most (the browser usually ends
# it sooner, when it closes).
BROWSER_SESSION = timedelta(hours=24)
PENDING = "portal_pending"  # password accepted, second step (TOTP) outstanding
PENDING_FOR = timedelta(minutes=5)
MAX_CODE_TRIES = 5
MAX_TOKEN = 200  # ours are 43 characters; anything far longer is not one of them


def safe_next(target: str | None) -> str:
    """Only a page of the portal itself: never an open redirect to another site."""
    if target and target.startswith("/portal/") and not target.startswith("//") and \
            "\\" not in target:
        return target
    return url_for("portal_mail.inbox")


def _tenant_id(name: str) -> int | None:
    if not name:
        return None
    with context.transaction() as db:
        tenant = db.scalar(select(Tenant).where(Tenant.name == name.strip().lower()))
        return tenant.id if tenant is not None else -1  # unknown: matches no account


def _finish_login(account_id: int, remember: bool, target: str | None) -> Response:
    with context.transaction() as db:
        account = db.get(PortalAccount, account_id)
        if account is None:
            return redirect(url_for("portal_auth.login"))
        days = mailbox.policy(db, account.tenant_id).stay_signed_in_days
        lifetime = timedelta(days=days) if remember else BROWSER_SESSION
        sid = web_sessions.open_session(db, web_sessions.PORTAL, account.id, context.now(),
                                        lifetime)
        user = context.PortalUser.of(account, sid)
    session.clear()  # session fixation: the signed-in session shares nothing with before
    login_user(user, remember=remember, duration=timedelta(days=days))
    return redirect(safe_next(target))


def _locked_message(until: datetime) -> str:
    return _("Too many failed attempts: signing in is blocked until %(time)s. "
             "If you forgot your password, reset it.",
             time=format_datetime(until.astimezone(UTC), "short"))


@auth.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    form = LoginForm()
    if request.method == "GET":
        form.tenant.data = request.args.get("tenant", "")
    if form.validate_on_submit():
        remember = bool(form.remember.data)
        tenant_id = _tenant_id(form.tenant.data or "")
        with context.transaction() as db:
            # The failure count must be saved, so the exception is caught in the block.
            try:
                account = mailbox.authenticate(db, form.address.data or "",
                                               form.password.data or "", context.now(),
                                               tenant_id)
            except mailbox.AccountLocked as locked:
                account = None
                flash(_locked_message(locked.until), "error")
            except mailbox.LoginFailed:
                account = None
                flash(_("The e-mail address or the password is wrong."), "error")
            else:
                account_id, has_totp = account.id, account.totp_secret_sealed is not None
        if account is not None:
            if not has_totp:
                return _finish_login(account_id, remember, request.args.get("next"))
            session.clear()
            session[PENDING] = {"id": account_id, "remember": remember, "tries": 0,
                                "at": context.now().timestamp(),
                                "next": request.args.get("next") or ""}
            return redirect(url_for("portal_auth.code"))
    return render_template("portal/login.html", form=form, brand=context.load_brand())


@auth.route("/login/code", methods=["GET", "POST"])
def code() -> str | Response:
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or \
            context.now().timestamp() - float(pending.get("at", 0)) > \
            PENDING_FOR.total_seconds():
        session.pop(PENDING, None)
        flash(_("Please sign in again."), "info")
        return redirect(url_for("portal_auth.login"))
    form = CodeForm()
    if form.validate_on_submit():
        with context.transaction() as db:
            account = db.get(PortalAccount, int(pending["id"]))
            ok = account is not None and mailbox.verify_totp(
                context.master_key(), account, (form.code.data or "").strip(), context.now())
        if ok:
            return _finish_login(int(pending["id"]), bool(pending.get("remember")),
                                 pending.get("next") or None)
        pending["tries"] = int(pending.get("tries", 0)) + 1
        if pending["tries"] >= MAX_CODE_TRIES:
            session.pop(PENDING, None)
            flash(_("Too many wrong codes. Please sign in again."), "error")
            return redirect(url_for("portal_auth.login"))
        session[PENDING] = pending
        flash(_("That code is not right. Check the time on your phone and try again."),
              "error")
    return render_template("portal/code.html", form=form, brand=context.load_brand())


@auth.get("/language/<code>")
def language(code: str) -> Response:
    """The footer's language links (before sign-in; afterwards the account's choice
    counts, see Settings). Only the display language changes, so a plain link will do."""
    if code in i18n.LANGUAGES:
        session[i18n.SESSION_KEY] = code
    return redirect(safe_next(request.args.get("next")) if request.args.get("next")
                    else url_for("portal_auth.login"))


@auth.post("/logout")
def logout() -> Response:
    form = ActionForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        if isinstance(user, context.PortalUser):
            with context.transaction() as db:
                web_sessions.end(db, user.sid, context.now())
        logout_user()
        session.clear()
        flash(_("You are signed out."), "info")
    return redirect(url_for("portal_auth.login"))


def _link_problem(error: mailbox.PortalError, purpose: str) -> tuple[str, int]:
    """The clear page for a link that cannot be used (any more)."""
    if error.reason is mailbox.Reason.LINK_EXPIRED:
        title = _("This link has expired")
        text = _("For your security, registration links are valid for 14 days. The next "
                 "secure message brings a fresh link; you may also ask the sender to write "
                 "again.") if purpose == "register" else \
            _("Password reset links are valid for one hour. Request a new one below.")
        status = 410
    else:
        title = _("This link cannot be used")
        text = _("It was used already or is incomplete. Copy the whole link from the "
                 "e-mail, or sign in if you registered already.") if purpose == "register" \
            else _("It was used already or is incomplete. Request a new one below.")
        status = 404
    return render_template("portal/link_problem.html", title=title, text=text,
                           purpose=purpose, brand=context.load_brand()), status


def _link_account(token: str, purpose: str) -> tuple[bool, mailbox.PortalError | None]:
    """Whether the link works (and needs the sender's one-time password); brands the page
    after the account's tenant."""
    if len(token) > MAX_TOKEN:
        return False, mailbox.TokenInvalid(mailbox.Reason.LINK_UNKNOWN, "not one of our links")
    with context.transaction() as db:
        try:
            account = mailbox.token_account(db, token, purpose, context.now())
        except (mailbox.TokenInvalid, mailbox.TokenExpired) as error:
            return False, error
        tenant = db.get(Tenant, account.tenant_id)
        if tenant is not None:
            g.portal_brand = context.brand_of(db, tenant)
            g.portal_default_language = g.portal_brand.default_language
        if account.language:  # chosen before (a reset link): the pages speak it too
            g.portal_language = account.language
        return purpose == "register" and mailbox.needs_sender_password(db, account), None


@auth.route("/register/<token>", methods=["GET", "POST"])
def register(token: str) -> str | Response | tuple[str, int]:
    needs_sender_password, problem = _link_account(token, "register")
    if problem is not None:
        return _link_problem(problem, "register")
    form = RegisterForm()
    if not needs_sender_password:
        del form.one_time_password
    if form.validate_on_submit():
        account_id = None
        with context.transaction() as db:
            try:
                account = mailbox.register(
                    db, token, form.password.data or "", context.now(),
                    sender_password=form.one_time_password.data if needs_sender_password
                    else None)
                account_id = account.id
            except mailbox.WeakPassword as weak:
                form.password.errors = [*form.password.errors, refusals.password(weak)]
            except mailbox.SenderPasswordRequired:
                form.one_time_password.errors = [*form.one_time_password.errors, _(
                    "This one-time password is not right (or has expired): check it with "
                    "the sender.")]
            except (mailbox.TokenExpired, mailbox.TokenInvalid) as error:
                return _link_problem(error, "register")
        if account_id is not None:
            flash(_("Welcome! Your account is ready."), "success")
            return _finish_login(account_id, False, None)
    return render_template("portal/register.html", form=form,
                           needs_sender_password=needs_sender_password,
                           brand=context.load_brand())


@auth.route("/reset", methods=["GET", "POST"])
def reset_request() -> str | Response:
    form = ResetRequestForm()
    if request.method == "GET":
        form.tenant.data = request.args.get("tenant", "")
    if form.validate_on_submit():
        named = _tenant_id(form.tenant.data or "")
        # The reset mail goes into the store's outbox with this transaction; the relay
        # sends it, even if the gateway is down at this moment.
        with context.transaction() as db:
            tenants = [named] if named is not None else \
                list(db.scalars(select(Tenant.id)))
            for tenant_id in tenants:
                mailbox.request_reset(db, context.master_key(), tenant_id,
                                      form.address.data or "", context.now(),
                                      context.public_url())
        # The same answer whether or not the address has an account.
        return render_template("portal/reset_sent.html", brand=context.load_brand())
    return render_template("portal/reset_request.html", form=form,
                           brand=context.load_brand())


@auth.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str) -> str | Response | tuple[str, int]:
    _unused, problem = _link_account(token, "reset")
    if problem is not None:
        return _link_problem(problem, "reset")
    form = RegisterForm()
    del form.one_time_password
    form.submit.label.text = _("Save password")
    if form.validate_on_submit():
        done = False
        with context.transaction() as db:
            try:
                mailbox.reset_password(db, token, form.password.data or "", context.now())
                done = True
            except mailbox.WeakPassword as weak:
                form.password.errors = [*form.password.errors, refusals.password(weak)]
            except (mailbox.TokenExpired, mailbox.TokenInvalid) as error:
                return _link_problem(error, "reset")
        if done:
            logout_user()
            session.clear()
            flash(_("Your new password is set. Please sign in."), "success")
            return redirect(url_for("portal_auth.login"))
    return render_template("portal/reset.html", form=form, brand=context.load_brand())
