"""Gives the seeded accounts and agencies Stripe customers in a running localstripe (local stack only).

localstripe makes up customer ids itself (it refuses an `id` on POST /v1/customers), so the seed files cannot
carry fixed ones: this creates one customer per account and agency of the given seed files, attaches a card and
makes it the default (`invoice_settings[default_payment_method]`), and writes copies of the seed files with each
`stripeCustomerId` filled in, for the seed loader to load (`Store::upsert_account` / the agency's customer).

Every customer gets Stripe's test Visa (`pm_card_visa`), except the accounts named with --declining, whose card
(`pm_card_chargeCustomerFail`, 4000 0000 0000 0341) attaches and then declines every charge.

Usage: localstripe-seed.py STRIPE_BASE_URL OUT_DIR [--declining ACCOUNT_ID ...] SEED_FILE.json ...
Prints the path of each written file, one a line. Standard library only.
"""
import argparse
import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path

GOOD_CARD = "pm_card_visa"
DECLINING_CARD = "pm_card_chargeCustomerFail"


def call(base, path, form):
    request = urllib.request.Request(
        base.rstrip("/") + path,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Authorization": "Bearer sk_test_local"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def customer_with_card(base, name, metadata, card):
    form = {"name": name}
    form.update({f"metadata[{k}]": v for k, v in metadata.items()})
    customer = call(base, "/v1/customers", form)["id"]
    method = call(base, f"/v1/payment_methods/{card}/attach", {"customer": customer})["id"]
    call(base, f"/v1/customers/{customer}", {"invoice_settings[default_payment_method]": method})
    return customer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--declining", action="append", default=[])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    known = set()
    for path in args.files:
        seed = json.loads(path.read_text())
        for agency in seed.get("agencies", []):
            agency["stripeCustomerId"] = customer_with_card(
                args.base, agency.get("name", agency["agencyId"]), {"agencyId": agency["agencyId"]}, GOOD_CARD
            )
        for account in seed.get("accounts", []):
            known.add(account["accountId"])
            card = DECLINING_CARD if account["accountId"] in args.declining else GOOD_CARD
            account["stripeCustomerId"] = customer_with_card(
                args.base, account.get("name", account["accountId"]), {"accountId": account["accountId"]}, card
            )
        out = args.out_dir / path.name
        out.write_text(json.dumps(seed, indent=2) + "\n")
        print(out)
    unknown = set(args.declining) - known
    if unknown:
        sys.exit(f"localstripe-seed: --declining names no seeded account: {', '.join(sorted(unknown))}")


if __name__ == "__main__":
    main()
