"""Services: the policy of esam_mail, below the front-ends and above the store and directory.

Packages by domain, each importing only the ones below it (setup.cfg, import-linter)::

    hybrid/  official/  ops/     hybrid mail, the official documents channel, operator tools
        accounts/                registration, identity, EDS, staff, notices
        mailflow/                SMTP delivery, queue, relay, inbound auth, DKIM, mailboxes
    auth, authcache              the Principal and the login check every domain shares

Services import no protocol library (aiosmtpd, Twisted, Starlette) and set no wire codes.
"""
