"""The official electronic documents channel (rules, paragraphs 12-13).

:mod:`.channel` takes a state body's signed document (CMS, RFC 5652) to the holder's
EDS-confirmed mailbox; :mod:`.evidence` keeps the signed, hash-chained evidence records
(ETSI EN 319 522 in spirit).
"""
