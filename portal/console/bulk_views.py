"""Bulk operations: importing users from a CSV file and issuing many certificates, worked
off in the background (``keydir.bulk``) with a page that shows how far they got."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from keydir import bulk
from keydir.bulk_models import QUEUED, RUNNING, BulkOperation
from keydir.errors import DirectoryError, NotFound
from keydir.models import Tenant
from portal.console import core
from portal.console.user_forms import ImportStartForm, ImportUploadForm

operations = Blueprint("console_bulk", __name__, url_prefix="/console")
KIND_NAMES = {bulk.USER_IMPORT: _l("User import"), bulk.ISSUANCE: _l("Certificate issuance")}
CHOOSE_TENANT = _l("Choose a tenant in the switcher at the top first: an operation works "
                   "on one tenant.")


def _operation(operation_id: int) -> BulkOperation:
    with core.transaction() as db:
        try:
            operation = bulk.get_operation(db, operation_id)
        except NotFound:
            abort(404)
        core.visible(operation.tenant_id)
        return operation


@operations.get("/operations")
def list_operations() -> str:
    return _list_page(ImportUploadForm())


def _list_page(upload: ImportUploadForm) -> str:
    scope = core.scope_tenant_id()
    with core.transaction() as db:
        rows = bulk.list_operations(db, scope)
        tenants = {t.id: t.display_name or t.name for t in db.scalars(select(Tenant))}
        tenant = core.working_tenant(db)
        waiting = len(bulk.without_certificate(db, tenant, core.now())) if tenant else 0
    return render_template("console/operations.html", active="operations", rows=rows,
                           tenants=tenants, all_tenants=scope is None, tenant=tenant,
                           waiting=waiting, upload=upload, issue_form=core.ActionForm(),
                           kinds=KIND_NAMES)


@operations.post("/operations/import")
def check_import() -> str | Response:
    """Step one: read the file and show what it would do; nothing changes yet."""
    upload = ImportUploadForm()
    if not upload.validate_on_submit():
        return _list_page(upload)
    with core.transaction() as db:
        tenant = core.working_tenant(db)
        if tenant is None:
            flash(str(CHOOSE_TENANT), "error")
            return redirect(url_for("console_bulk.list_operations"))
        preview = bulk.preview_import(db, tenant, upload.file.data.read())
        tenant_name = tenant.display_name or tenant.name
    start = ImportStartForm(formdata=None, addresses="\n".join(preview.addresses))
    return render_template("console/import_preview.html", active="operations",
                           preview=preview, start=start, tenant_name=tenant_name,
                           filename=upload.file.data.filename or "")


@operations.post("/operations/import/start")
def start_import() -> Response:
    form = ImportStartForm()
    if not form.validate_on_submit():
        flash(_("There is nothing to import: upload the file again."), "error")
        return redirect(url_for("console_bulk.list_operations"))
    addresses = [line.strip() for line in (form.addresses.data or "").splitlines()
                 if line.strip()]
    return _start(lambda db, tenant: bulk.start_user_import(
        db, tenant, addresses, core.actor(), core.now()))


@operations.post("/operations/issuance")
def start_issuance() -> Response:
    if not core.ActionForm().validate_on_submit():
        abort(400)
    return _start(lambda db, tenant: bulk.start_issuance(db, tenant, core.actor(), core.now()))


def _start(begin: Callable[[Session, Tenant], BulkOperation]) -> Response:
    try:
        with core.transaction() as db:
            tenant = core.working_tenant(db)
            if tenant is None:
                flash(str(CHOOSE_TENANT), "error")
                return redirect(url_for("console_bulk.list_operations"))
            operation = begin(db, tenant)
            operation_id = operation.id
    except DirectoryError as exc:
        flash(_("The operation was not started: %(error)s", error=str(exc)), "error")
        return redirect(url_for("console_bulk.list_operations"))
    flash(_("The operation is queued; it starts within seconds."), "success")
    return redirect(url_for("console_bulk.show_operation", operation_id=operation_id))


@operations.get("/operations/<int:operation_id>")
def show_operation(operation_id: int) -> str:
    operation = _operation(operation_id)
    return render_template("console/operation.html", active="operations", op=operation,
                           kinds=KIND_NAMES, active_states=(QUEUED, RUNNING),
                           cancel_form=core.ActionForm())


@operations.post("/operations/<int:operation_id>/cancel")
def cancel(operation_id: int) -> Response:
    if not core.ActionForm().validate_on_submit():
        abort(400)
    try:
        with core.transaction() as db:
            try:
                operation = bulk.get_operation(db, operation_id)
            except NotFound:
                abort(404)
            core.visible(operation.tenant_id)
            bulk.cancel(db, operation, core.actor(), core.now())
    except DirectoryError as exc:
        flash(_("Not cancelled: %(error)s", error=str(exc)), "error")
    else:
        flash(_("The operation is cancelled. What was done stays done."), "success")
    return redirect(url_for("console_bulk.show_operation", operation_id=operation_id))
