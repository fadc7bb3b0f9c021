"""Customer data under the GDPR: export, erasure, retention (docs/privacy.md)."""
