"""Checks one mdb webhook message as a receiver should (the README's
example): the signature covers the timestamp and the body, and a message
older than five minutes is refused, so a captured one cannot be replayed.

usage: webhook_verify.py SECRET TIMESTAMP SIGNATURE BODY_FILE NOW
exit 0: genuine and fresh; 1: refused (the reason on stdout)
"""
import hashlib
import hmac
import sys

MAX_AGE = 300


def verify(secret, timestamp, signature, body, now):
    if not timestamp.isdigit() or abs(now - int(timestamp)) > MAX_AGE:
        return "too old (or from the future): a replay?"
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    if not hmac.compare_digest("sha256=" + mac.hexdigest(), signature):
        return "bad signature"
    return None


secret, timestamp, signature, body_file, now = sys.argv[1:6]
with open(body_file, "rb") as f:
    why = verify(secret.encode(), timestamp, signature, f.read(), int(now))
print(why or "ok")
sys.exit(1 if why else 0)
