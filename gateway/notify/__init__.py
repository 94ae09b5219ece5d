"""Alarm notifications (contract §9): who is told of an alert, when, and how it reaches them.

* `policy.py` — the escalation policy: a pure rule on the worker's clock that decides who is
  notified of which alert at which stage (exact live and in replay);
* `outbox.py` — the notifications and delivery attempts in the store;
* `channels.py` — apprise URLs: checked, masked, sent;
* `message.py` — the text people read, in the site's locale;
* `links.py` — signed acknowledge links;
* `deliver.py` — the forwarder that sends after commit, with retries, rate limits and digests.
"""
