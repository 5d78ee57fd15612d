"""Serves localstripe (PyPI, a stateful fake Stripe) on 127.0.0.1 only.

localstripe's own command binds every interface (`::`) and loads and dumps its whole state in
/tmp/localstripe.pickle on every write, which parallel test servers would share. This launcher builds the same
aiohttp app, binds the loopback address it is given, keeps its state in memory only, and adds what real Stripe
documents and the fake lacks that our recovery path reads: `GET /v1/payment_intents?customer=...`.

Usage: localstripe-serve.py PORT [--webhook URL --webhook-secret SECRET]
Prints "localstripe listening on 127.0.0.1:PORT" once it accepts connections.
"""
import argparse
import asyncio
import logging
import sys

from aiohttp import web
from localstripe import resources
from localstripe.server import app
from localstripe.webhooks import register_webhook

# State in memory only: no shared pickle file between servers.
resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None

_list_payment_intents = resources.PaymentIntent._api_list_all.__func__


def _list_payment_intents_by_customer(cls, url, customer=None, limit=None, starting_after=None, **kwargs):
    # Stripe's list filter `customer` (documented); newest first as Stripe lists them.
    page = _list_payment_intents(cls, url, limit=limit, starting_after=starting_after, **kwargs)
    if customer is not None:
        page._list = [pi for pi in page._list if pi.customer == customer]
    page._list.sort(key=lambda pi: pi.created, reverse=True)
    return page


resources.PaymentIntent._api_list_all = classmethod(_list_payment_intents_by_customer)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--webhook")
    parser.add_argument("--webhook-secret")
    args = parser.parse_args()
    if args.webhook:
        if not args.webhook_secret:
            sys.exit("--webhook needs --webhook-secret")
        register_webhook("local", args.webhook, args.webhook_secret, None)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(serve(args.port))


async def serve(port):
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host="127.0.0.1", port=port).start()
    # Only now is the socket bound and listening.
    print(f"localstripe listening on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    main()
