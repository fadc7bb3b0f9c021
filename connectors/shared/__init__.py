"""Helpers every connector may import; the one place connectors share code.

A connector imports the plugin API (:mod:`connectors.base`, the data model in
:mod:`hub.envelope`), these helpers and its own package: never a sibling connector. Pure
modules are marked so in their docstrings; the others do I/O.

* :mod:`~connectors.shared.webhooks`: a webhook body read to its end under a cap, bounded JSON
* :mod:`~connectors.shared.basic_auth`: the ``Authorization: Basic`` value of a user and password
* :mod:`~connectors.shared.signed_tokens`: HMAC-signed tokens (pure)
* :mod:`~connectors.shared.media_links`: short-lived signed links to stored blobs (pure)
* :mod:`~connectors.shared.media_route`: serving blobs under those links to a provider
* :mod:`~connectors.shared.fetch_policy`: which media URLs may be fetched (SSRF policy, pure)
* :mod:`~connectors.shared.media_fetcher`: fetching media under that policy (I/O)
* :mod:`~connectors.shared.single_flight`: one storing task per idempotency key, and a memory of
  the keys stored lately
* :mod:`~connectors.shared.rate_limit`: token buckets and sliding-window caps per key (pure)
* :mod:`~connectors.shared.workers`: worker processes with a time budget per job
* :mod:`connectors.shared.mail`: reading mail (MIME), receiving it (IMAP, an SMTP server) and
  sending it (an SMTP relay)
"""
