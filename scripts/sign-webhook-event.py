"""Prints a sample stripe-webhook event (API Gateway payload 2.0) with its body signed now, as Stripe signs:
`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the endpoint secret>`.

Usage: sign-webhook-event.py EVENT_FILE   (secret from STRIPE_WEBHOOK_SECRET; the local stack exports it)
"""
import hashlib
import hmac
import json
import os
import sys
import time

secret = os.environ.get("STRIPE_WEBHOOK_SECRET", "").split()
if not secret:
    sys.exit("sign-webhook-event: STRIPE_WEBHOOK_SECRET is not set (source scripts/local-stack.sh)")
with open(sys.argv[1]) as f:
    event = json.load(f)
body = event["body"].encode()
t = str(int(time.time()))
v1 = hmac.new(secret[0].encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
event["headers"]["stripe-signature"] = f"t={t},v1={v1}"
print(json.dumps(event))
