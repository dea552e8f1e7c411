"""Accounts: who may have a mailbox and how they prove it.

Registration and applications (rules, paragraphs 4-7, 11), identity numbers (IIN/BIN),
logins and the one password policy, the second factor (TOTP, RFC 6238), staff roles,
EDS verification and confirmation (CMS, RFC 5652; OCSP RFC 6960; CRL RFC 5280),
notices to subscribers, and the staging test PKI (``esam eds test-pki``).
"""
