"""schemathesis hooks for scripts/contract-test.sh (loaded through SCHEMATHESIS_HOOKS).

Two values in the contract are not free-form data, and a generator that treats them as such makes requests that
are valid by the schema yet rightly refused. These hooks give such requests the values a real client would send;
nothing else is changed, and a negative case keeps whatever made it negative.

* Idempotency-Key: a key names one purchase of one account. A generated key the server already stored for
  another request of the same account (hypothesis draws short keys such as "0" again and again) is replaced, at
  send time, by a fresh UUID: still a valid key, so the case stays what it was. The reuse rule itself (422
  idempotency_key_reused) is covered by the Rust tests (shared/tests), not here.
* cursor: an opaque token, valid only as a `nextCursor` the same list returned. A positive case carrying a
  cursor the API never issued gets one the API did issue for that list (same operation, same path, same filters
  in the query: another filter is another list), or none
  when the list has not had a second page yet. Negative cases (bad characters, empty, too long) are sent as
  generated and must be 400. This applies to every operation with a `cursor` query parameter, so lists added to
  the contract later are covered without edits here.
"""

from __future__ import annotations

import atexit
import json
import sys
import uuid

import schemathesis
from schemathesis import GenerationMode

# (accountId, key) -> the request the server stored the key with.
_stored_keys: dict[tuple[str, str], str] = {}
# (operation label, path parameters, filters) -> cursors the API issued for that list, oldest first.
_issued_cursors: dict[tuple[str, tuple, tuple], list[str]] = {}
_counts = {"keys renewed": 0, "cursors issued": 0, "cursors replaced by issued ones": 0, "cursors dropped": 0}


@atexit.register
def _report() -> None:
    print("contract-hooks: " + ", ".join(f"{n} {what}" for what, n in _counts.items()), file=sys.stderr)


def _header(headers: dict | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return key
    return None


def _request_signature(case) -> str:
    return json.dumps(case.body, sort_keys=True, default=str) if case.body is not None else ""


# Query parameters that page through a list rather than choose it: every other one (a filter such as the agency
# purchases' `accountId`) makes another list, whose cursors are not valid in this one.
_PAGING_PARAMETERS = {"cursor", "limit"}


def _list_key(case) -> tuple[str, tuple, tuple]:
    filters = {k: str(v) for k, v in (case.query or {}).items() if k not in _PAGING_PARAMETERS}
    return case.operation.label, tuple(sorted((case.path_parameters or {}).items())), tuple(sorted(filters.items()))


def _is_positive(case) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode == GenerationMode.POSITIVE


@schemathesis.hook
def before_call(context, case, kwargs):
    header = _header(case.headers, "Idempotency-Key")
    if header is not None:
        account = (case.path_parameters or {}).get("accountId", "")
        stored = _stored_keys.get((account, case.headers[header]))
        if stored is not None and stored != _request_signature(case):
            case.headers[header] = str(uuid.uuid4())
            _counts["keys renewed"] += 1

    if case.query and "cursor" in case.query and _is_positive(case):
        issued = _issued_cursors.get(_list_key(case), [])
        if case.query["cursor"] not in issued:
            if issued:
                case.query["cursor"] = issued[-1]
                _counts["cursors replaced by issued ones"] += 1
            else:
                del case.query["cursor"]
                _counts["cursors dropped"] += 1


@schemathesis.hook
def after_call(context, case, response):
    if response.status_code == 201:
        header = _header(case.headers, "Idempotency-Key")
        if header is not None:
            account = (case.path_parameters or {}).get("accountId", "")
            _stored_keys.setdefault((account, case.headers[header]), _request_signature(case))
    if response.status_code == 200:
        try:
            body = response.json()
        except Exception:
            return
        cursor = body.get("nextCursor") if isinstance(body, dict) else None
        if isinstance(cursor, str):
            issued = _issued_cursors.setdefault(_list_key(case), [])
            if cursor not in issued:
                issued.append(cursor)
                _counts["cursors issued"] += 1
