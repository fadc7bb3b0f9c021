"""Mail for connectors that speak it: the email connector, and the fax connector's gateway for
fax services that deliver faxes by mail.

Reading (pure): :mod:`.reader` (raw bytes → envelope and files), built on :mod:`.mime` (the
MIME tree), :mod:`.headers` (header fields a sender controls), :mod:`.charsets` (charset labels
as mail writes them) and :mod:`.message_ids` (our signed Message-IDs). Transport (I/O):
:mod:`.doors` runs :mod:`.imap` (a mailbox followed with IDLE) and :mod:`.smtp_in` (an SMTP
server of our own) together; :mod:`.smtp_out` hands mail to a relay. :mod:`.settings` holds
their settings blocks.
"""
