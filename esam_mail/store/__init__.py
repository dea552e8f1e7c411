"""The mail store: Maildir++ folders with Dovecot-compatible UID lists.

Modules:
    interfaces  Protocols and value types (Folder, UserStore, Notifier, MessageInfo ...)
    maildir     MaildirStore / MaildirUser / MaildirFolder; the on-disk layout is in its
                docstring
    names       folder-name validation and the API name <-> directory mapping
    uidlist     dovecot-uidlist, dovecot-keywords, the folder lock
    cache       per-folder SQLite metadata cache (esam-cache.sqlite)
    notify      LocalNotifier, UnixDatagramNotifier (IDLE across processes)
    check       check_user(user, repair) for ``esam store check``
    spool       outbound/print spools
"""
