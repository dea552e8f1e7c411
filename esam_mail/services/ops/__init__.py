"""Operations: the operator's tools behind ``esam`` commands.

Backup and restore, migration in and out (Dovecot passwd-file, Maildir, mbox RFC 4155),
statistics, the DNS records a domain needs (MX, SPF RFC 7208, DKIM RFC 6376, DMARC
RFC 7489, MTA-STS RFC 8461, TLS-RPT RFC 8460), and retention.
"""
