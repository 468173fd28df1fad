"""Drives the Salesforce stand-in with simple-salesforce, an independent client.

Usage: python3 simple_salesforce_check.py <login_url>

The only shim is a requests transport adapter: simple-salesforce builds
https://login.salesforce.com/... and https://<instance host>/... URLs, and the
adapter sends both to the stand-in's plain-http address. Everything else (login,
query paging, describe, CRUD, Bulk 2.0) is simple-salesforce's own code.
Credentials come from the environment (set by the Rust test), with the
stand-in's defaults.
"""

import csv
import io
import os
import sys
from urllib.parse import urlparse, urlunparse

try:
    import requests
    from requests.adapters import HTTPAdapter
    from simple_salesforce import Salesforce
    from simple_salesforce.exceptions import SalesforceMalformedRequest
except ImportError as exc:  # pragma: no cover - the message is the point
    print(
        f"simple-salesforce is not installed ({exc}); run: "
        "pip install -r crates/perly-standins/tests/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(2)


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {message}")


class ToStandin(HTTPAdapter):
    """Sends Salesforce's https hosts to the stand-in's http address."""

    def __init__(self, standin_host):
        super().__init__()
        self.standin_host = standin_host

    def send(self, request, **kwargs):
        url = urlparse(request.url)
        if url.hostname and (url.hostname.endswith("salesforce.com") or url.netloc == self.standin_host):
            request.url = urlunparse(url._replace(scheme="http", netloc=self.standin_host))
        return super().send(request, **kwargs)


def rows(csv_pages):
    out = []
    for page in csv_pages:
        out.extend(csv.DictReader(io.StringIO(page)))
    return out


def main():
    login_url = sys.argv[1]
    host = urlparse(login_url).netloc
    accounts = int(os.environ.get("SF_ACCOUNTS", "1100"))
    session = requests.Session()
    session.mount("https://", ToStandin(host))

    sf = Salesforce(
        username=os.environ.get("SF_USERNAME", "admin@acme-cs.example.com"),
        password=os.environ.get("SF_PASSWORD", "perly-standin-password"),
        consumer_key=os.environ.get("SF_CLIENT_ID", "3MVG9simple"),
        consumer_secret=os.environ.get("SF_CLIENT_SECRET", "simple-secret"),
        domain="login",
        session=session,
    )
    check(sf.sf_instance == host, f"password-grant login lands on the instance {sf.sf_instance}")

    result = sf.query("SELECT Id, Name, Owner.Email FROM Account ORDER BY Name LIMIT 10")
    check(result["totalSize"] == 10 and result["done"], "query with ORDER BY and LIMIT")
    check(result["records"][0]["Owner"]["Email"].endswith("@acme-cs.example.com"), "parent fields nest under the relationship")
    usage = sf.api_usage.get("api-usage")
    check(usage is not None and usage.used >= 1, f"Sforce-Limit-Info is parsed: {usage}")

    contacts = sf.query_all("SELECT Id, Email, Account.Name FROM Contact")
    check(contacts["totalSize"] == accounts * 2, f"query_all totalSize {contacts['totalSize']}")
    check(len(contacts["records"]) == accounts * 2, "query_all follows nextRecordsUrl past 2000 records")
    check(len({r["Id"] for r in contacts["records"]}) == accounts * 2, "every contact id is distinct")

    describe = sf.Account.describe()
    names = {f["name"] for f in describe["fields"]}
    check({"Id", "Name", "OwnerId", "CustomerPriority__c"} <= names, "Account describe lists its fields")

    try:
        sf.query("SELECT Id, Nope__c FROM Account")
        check(False, "an unknown field is refused")
    except SalesforceMalformedRequest as exc:
        check(exc.content[0]["errorCode"] == "INVALID_FIELD", "an unknown field is INVALID_FIELD")

    created = sf.Account.create({"Name": "Simple Salesforce Co", "Industry": "Energy"})
    check(created["success"] and created["id"].startswith("001"), f"create answers a SaveResult {created}")
    account = sf.Account.get(created["id"])
    check(account["Name"] == "Simple Salesforce Co", "get reads the new record")
    status = sf.Account.update(created["id"], {"Industry": "Retail"})
    check(status == 204, f"update answers 204 ({status})")
    check(sf.Account.get(created["id"])["Industry"] == "Retail", "update is visible")

    pages = list(sf.bulk2.Account.query("SELECT Id, Name, IsDeleted, CreatedDate, Owner.Email FROM Account", max_records=500, wait=0.1))
    accounts_rows = rows(pages)
    check(len(pages) == 3, f"bulk 2.0 query pages by maxRecords and Sforce-Locator ({len(pages)} pages)")
    check(len(accounts_rows) == accounts + 1, f"bulk 2.0 query returns every account ({len(accounts_rows)})")
    first = accounts_rows[0]
    check(first["IsDeleted"] == "false" and first["CreatedDate"].endswith(".000Z"), f"CSV values as Salesforce writes them {first}")
    check(first["Owner.Email"].endswith("@acme-cs.example.com"), "parent columns are Owner.Email")
    check(any(r["Name"] == "Simple Salesforce Co" for r in accounts_rows), "bulk sees the created account")

    gone = contacts["records"][0]["Id"]
    sf.Contact.delete(gone)
    live = rows(sf.bulk2.Contact.query("SELECT Id, IsDeleted FROM Contact", wait=0.1))
    everything = rows(sf.bulk2.Contact.query_all("SELECT Id, IsDeleted FROM Contact", wait=0.1))
    check(len(live) == accounts * 2 - 1, f"bulk query leaves the deleted contact out ({len(live)})")
    check(len(everything) == accounts * 2, f"bulk queryAll keeps it ({len(everything)})")
    check(any(r["Id"] == gone and r["IsDeleted"] == "true" for r in everything), "queryAll marks it IsDeleted=true")
    print("simple-salesforce: all checks passed")


if __name__ == "__main__":
    main()
