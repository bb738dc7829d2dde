"""Read a tenant's users from Microsoft Graph (Entra ID) with the app's own credentials.

msal's client-credentials flow gets the token (scope ``<graph>/.default``); then
``GET /v1.0/users`` page by page, following ``@odata.nextLink``. Each user gives one
entry per e-mail address: ``mail`` and every ``smtp:``/``SMTP:`` proxy address (the
upper-case ``SMTP:`` one is the primary; the others are aliases of the same person and
share its object id). Users without any mail address (no mailbox) are left out.

Graph throttles with 429 (and sometimes 503) and a Retry-After header: we wait as long
as it asks, a few times, and then give up with a message saying when to try again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msal
import requests

from keydir.directory_import.settings import GraphSettings
from keydir.directory_import.sync import SourceEntry
from keydir.errors import DirectoryError

USERS_PATH = "/v1.0/users"
SELECT = "id,displayName,mail,proxyAddresses,accountEnabled,userPrincipalName"
PAGE_SIZE = 999  # Graph's largest page for /users: fewest round trips
RETRIES = 4  # per page, after throttling or a passing server error
LONGEST_WAIT = 300.0  # seconds; a longer Retry-After ends the run with a message instead
DEFAULT_WAIT = 10.0  # when a 429/503 comes without Retry-After
_RETRY_STATUSES = {429, 503, 504}


class GraphError(DirectoryError):
    """Microsoft Graph or Entra ID refused, throttled or could not be reached."""


@dataclass
class GraphUsers:
    entries: list[SourceEntry]
    users: int  # accounts read, with or without a mail address
    without_mail: int


def read_users(settings: GraphSettings, *, verify: bool | str = True, timeout: float = 30,
               sleep: Callable[[float], None] = time.sleep) -> GraphUsers:
    """Every user of the Entra tenant, as directory entries (raises ``GraphError``)."""
    token = access_token(settings, verify=verify, timeout=timeout)
    entries: list[SourceEntry] = []
    users = without_mail = 0
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {token}"
        http.verify = verify
        for user in _pages(http, settings, timeout, sleep):
            users += 1
            found = user_entries(user)
            without_mail += not found
            entries.extend(found)
    return GraphUsers(entries, users, without_mail)


def user_entries(user: dict[str, Any]) -> list[SourceEntry]:
    """One Graph user object's addresses, the primary first."""
    primary = ""
    aliases: list[str] = []
    for proxy in user.get("proxyAddresses") or []:
        kind, _, address = str(proxy).partition(":")
        if kind == "SMTP" and address:
            primary = address
        elif kind.lower() == "smtp" and address:
            aliases.append(address)
    mail = str(user.get("mail") or "")
    if not primary:
        primary = mail
    elif mail and mail.lower() != primary.lower():
        aliases.insert(0, mail)
    common = {"display_name": str(user.get("displayName") or ""),
              "external_id": str(user.get("id") or ""),
              "enabled": user.get("accountEnabled") is not False}
    found: list[SourceEntry] = []
    seen: set[str] = set()
    for index, address in enumerate([primary, *aliases] if primary else aliases):
        if address.lower() in seen:
            continue
        seen.add(address.lower())
        found.append(SourceEntry(address=address, is_primary=index == 0 and bool(primary),
                                 **common))
    return found


def access_token(settings: GraphSettings, *, verify: bool | str = True,
                 timeout: float = 30) -> str:
    authority = f"{settings.authority_url.rstrip('/')}/{settings.entra_tenant_id}"
    try:
        # instance_discovery=False: only the configured authority is ever contacted.
        app = msal.ConfidentialClientApplication(
            settings.client_id, client_credential=settings.client_secret, authority=authority,
            verify=verify, timeout=timeout, instance_discovery=False)
        result = app.acquire_token_for_client(
            scopes=[f"{settings.graph_url.rstrip('/')}/.default"])
    except requests.RequestException as exc:
        raise GraphError(f"cannot reach Entra ID at {settings.authority_url} ({exc}): check "
                         "the network and proxy, then try again") from exc
    except ValueError as exc:  # msal: the authority's discovery document was refused
        raise GraphError(f"Entra ID does not know the tenant {settings.entra_tenant_id!r} at "
                         f"{settings.authority_url}: check --entra-tenant (the directory "
                         "(tenant) id of the app registration)") from exc
    if "access_token" in result:
        return str(result["access_token"])
    raise GraphError(_token_refusal(settings, result))


def _token_refusal(settings: GraphSettings, result: dict[str, Any]) -> str:
    error = str(result.get("error", "unknown_error"))
    description = str(result.get("error_description", "")).splitlines()[0][:300]
    fix = {
        "invalid_client": "the client secret is wrong or expired: create a new one under "
                          "Certificates & secrets and store it with 'sealgate directory "
                          "source set-graph'",
        "unauthorized_client": "the client id is not an app registration of this tenant: "
                               "check --client-id and --entra-tenant",
        "invalid_scope": "check the Graph URL of the source",
    }.get(error, "check the app registration (see docs/directory-import.md)")
    return f"Entra ID refused the token request for client {settings.client_id} " \
           f"({error}: {description}); {fix}"


def _pages(http: requests.Session, settings: GraphSettings, timeout: float,
           sleep: Callable[[float], None]) -> Iterator[dict[str, Any]]:
    base = settings.graph_url.rstrip("/")
    url: str | None = f"{base}{USERS_PATH}"
    params: dict[str, str] | None = {"$select": SELECT, "$top": str(PAGE_SIZE)}
    while url:
        # The token goes only to the configured Graph: a next link elsewhere is refused.
        if not (url == base or url.startswith(base + "/")):
            raise GraphError(f"Graph's next page link points outside {base} ({url}); "
                             "refusing to send the token there")
        page = _get(http, url, params, timeout, sleep)
        yield from page.get("value", [])
        url, params = page.get("@odata.nextLink"), None  # the link carries the query


def _get(http: requests.Session, url: str, params: dict[str, str] | None, timeout: float,
         sleep: Callable[[float], None]) -> dict[str, Any]:
    for attempt in range(RETRIES + 1):
        try:
            response = http.get(url, params=params, timeout=timeout)
        except requests.RequestException as exc:
            raise GraphError(f"cannot reach Microsoft Graph at {url.split('?')[0]} ({exc}): "
                             "check the network and proxy, then try again") from exc
        if response.status_code in _RETRY_STATUSES:
            wait = _retry_after(response)
            if attempt == RETRIES or wait > LONGEST_WAIT:
                raise GraphError(f"Microsoft Graph is throttling this tenant's requests "
                                 f"(HTTP {response.status_code}, retry after {wait:.0f} s, "
                                 f"{attempt + 1} attempt(s)): try again later")
            sleep(wait)
            continue
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        raise GraphError(_refusal(response))
    raise AssertionError("unreachable: the loop returns or raises")


def _retry_after(response: requests.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", DEFAULT_WAIT)))
    except ValueError:  # an HTTP date: Graph sends seconds, so wait the default
        return DEFAULT_WAIT


def _refusal(response: requests.Response) -> str:
    try:
        error = response.json().get("error", {})
        detail = f"{error.get('code', '')}: {error.get('message', '')}"
    except ValueError:
        detail = response.text[:200]
    fix = {
        401: "the access token was refused: check the Entra tenant id of the source",
        403: "the app registration lacks the application permission User.Read.All with "
             "admin consent: grant it in Entra ID (API permissions, Grant admin consent)",
    }.get(response.status_code, "try again later; if it persists, check Microsoft's "
                                "service health")
    return f"Microsoft Graph answered HTTP {response.status_code} ({detail}); {fix}"
