"""``esam dkim keygen|dns``: DKIM signing keys and the DNS records that publish them.

``keygen`` writes ``<data_dir>/dkim/<selector>.<rsa|ed25519>.key`` (0600, never
overwritten; RSA 2048 or Ed25519, RFC 8463) and prints the TXT record for
``<selector>._domainkey.<domain>`` in zone-file syntax, split into
character-strings of at most 255 octets (RFC 6376 3.6.2.2).  The server signs
with the selectors listed in ``[dkim] keys``; keygen says when the new one is
not listed yet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from esam_mail.cli._i18n import _
from esam_mail.cli.commands import Sub, command, emit, err, json_help, load_config

ALGORITHMS = {"rsa": "rsa-sha256", "rsa-sha256": "rsa-sha256",
              "ed25519": "ed25519-sha256", "ed25519-sha256": "ed25519-sha256"}


def zone_line(name: str, value: str) -> str:
    """``name. IN TXT ( "chunk" "chunk" )`` for a zone file."""
    from esam_mail.services.mailflow.dkim import txt_chunks

    chunks = " ".join(f'"{c}"' for c in txt_chunks(value))
    return f"{name}. IN TXT ( {chunks} )"


@command
def add_dkim(sub: Sub) -> None:
    p = sub.add_parser("dkim", help=_("make DKIM keys and print their DNS TXT records"))
    d = p.add_subparsers(dest="dkim_cmd", metavar="ACTION", required=True)
    k = d.add_parser("keygen", help=_("write a new signing key and print the DNS TXT record to publish"))
    k.add_argument("--selector", required=True, help=_("DKIM selector (s=), e.g. 2026a"))
    k.add_argument("--algorithm", default="rsa", choices=sorted(ALGORITHMS),
                   help=_("rsa (rsa-sha256, 2048 bits) or ed25519 (ed25519-sha256); default rsa"))
    k.add_argument("--domain", help=_("signing domain (d=); default mail.domain"))
    k.add_argument("--json", action="store_true", help=json_help())
    k.set_defaults(func=cmd_keygen)
    n = d.add_parser("dns", help=_("the TXT records of the keys in [dkim] keys"))
    n.add_argument("--json", action="store_true", help=json_help())
    n.set_defaults(func=cmd_dns)


def cmd_keygen(args: argparse.Namespace) -> int:
    from esam_mail.services.mailflow.dkim import dns_name, generate_key

    cfg = load_config(args)
    algorithm = ALGORITHMS[args.algorithm]
    domain = (args.domain or cfg.mail.domain).lower().rstrip(".")
    try:
        path, record = generate_key(cfg.data_dir / "dkim", args.selector, algorithm)
    except ValueError as e:
        err(f"selector: {e}")
        return 2
    except FileExistsError as e:
        err("selector: " + _("a key for selector {selector!r} exists already ({path}); keys are never overwritten",
                             selector=args.selector, path=e.filename))
        return 1
    name = dns_name(args.selector, domain)
    configured = cfg.dkim.keys.get(args.selector)
    data = {"selector": args.selector, "algorithm": algorithm, "domain": domain, "key_file": path,
            "dns_name": name, "txt": record, "configured": configured == algorithm}
    emit(args, data, zone_line(name, record))
    if not args.json:
        print("; " + _("private key: {path}", path=path), file=sys.stderr)
        if configured != algorithm:
            print("; " + _('not signing with it yet: add  {line}  to [dkim] keys in {config} (publish the record first)',
                           line=f'"{args.selector}" = "{algorithm}"', config=cfg.source or _("the config")),
                  file=sys.stderr)
    return 0


def cmd_dns(args: argparse.Namespace) -> int:
    from esam_mail.app import dkim_key_files
    from esam_mail.services.mailflow.dkim import dns_name, dns_record

    cfg = load_config(args)
    rows = []
    for selector, algorithm, path in dkim_key_files(cfg):
        rows.append({"selector": selector, "algorithm": algorithm, "key_file": path,
                     "dns_name": dns_name(selector, cfg.mail.domain),
                     "txt": dns_record(Path(path).read_bytes(), algorithm)})
    missing = sorted(set(cfg.dkim.keys) - {r["selector"] for r in rows})
    emit(args, rows, "\n".join(zone_line(r["dns_name"], r["txt"]) for r in rows) or "; " + _("no DKIM keys"))
    for selector in missing:
        err(_("no key file for selector {selector!r}: run {command} or {init}", selector=selector,
              command=f"`esam dkim keygen --selector {selector}`", init="`esam init`"))
    return 1 if missing else 0
