"""The DNS records a mail domain served by esam_mail needs (``esam dns``).

For ``mail.domain`` and every ``mail.extra_domains`` entry:

* MX (RFC 5321 5.1) -> ``public.mx_hosts``;
* SPF (RFC 7208): ``v=spf1 mx -all``;
* DMARC (RFC 7489 6.1) at ``_dmarc``, reports to ``public.report_address``;
* SRV for client set-up (RFC 6186; ``_submissions`` from RFC 8314 5.1);
* MTA-STS (RFC 8461): ``_mta-sts`` TXT with an ``id`` derived from the policy
  text (it changes whenever the policy does) and the policy file itself, served
  by the HTTP listener at ``/.well-known/mta-sts.txt``;
* TLS-RPT (RFC 8460) at ``_smtp._tls``;
* CNAMEs for ``autoconfig``/``mta-sts`` and the ``_autodiscover._tcp`` SRV, pointing
  at ``public.web_host``.

DKIM keys (RFC 6376 3.6.1, RFC 8463) are published for ``mail.domain``, the signing
domain, from the key files in ``<data_dir>/dkim``; long values are split into
255-octet character-strings (RFC 1035 3.3.14).
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from esam_mail.config import Config
from esam_mail.services.mailflow.dkim import dns_name, dns_record, txt_chunks

DEFAULT_TTL = 3600


@dataclass(frozen=True)
class Record:
    """One resource record.  ``value`` is the whole RDATA (a TXT value unsplit)."""

    name: str
    type: str
    value: str
    ttl: int = DEFAULT_TTL
    comment: str = ""
    chunks: list[str] = field(default_factory=list)

    def zone_line(self) -> str:
        """The record in zone-file (RFC 1035 5.1) syntax, names fully qualified."""
        owner = _fqdn(self.name)
        if self.type == "TXT":
            parts = self.chunks or txt_chunks(self.value)
            if len(parts) == 1:
                rdata = _quote(parts[0])
            else:
                rdata = "( " + "\n\t\t".join(_quote(p) for p in parts) + " )"
        else:
            rdata = self.value
        line = f"{owner}\t{self.ttl}\tIN\t{self.type}\t{rdata}"
        return f"; {self.comment}\n{line}" if self.comment else line

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if self.type == "TXT":
            d["chunks"] = self.chunks or txt_chunks(self.value)
        else:
            d.pop("chunks")
        return d


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def public_hosts(cfg: Config) -> dict[str, str]:
    """The host names clients and MTAs are told, with the server.hostname fallback."""
    p, h = cfg.public, cfg.server.hostname
    return {
        "imap": p.imap_host or h,
        "smtp": p.smtp_host or h,
        "web": p.web_host or h,
        "display_name": p.display_name or cfg.mail.domain,
    }


def mx_hosts(cfg: Config) -> list[str]:
    return list(cfg.public.mx_hosts) or [cfg.server.hostname]


def report_address(cfg: Config) -> str:
    return cfg.public.report_address or f"postmaster@{cfg.mail.domain}"


def mta_sts_policy(cfg: Config) -> str:
    """The policy file (RFC 8461 3.2): CRLF lines, one ``mx:`` per MX host."""
    lines = ["version: STSv1", f"mode: {cfg.public.mta_sts_mode}"]
    lines += [f"mx: {h.rstrip('.')}" for h in mx_hosts(cfg)]
    lines.append(f"max_age: {cfg.public.mta_sts_max_age}")
    return "\r\n".join(lines) + "\r\n"


def mta_sts_id(cfg: Config) -> str:
    """1-32 alphanumerics that change whenever the policy text changes (RFC 8461 3.1)."""
    return hashlib.sha256(mta_sts_policy(cfg).encode()).hexdigest()[:20]


def dkim_keys(cfg: Config) -> list[tuple[str, str, Path | None]]:
    """``(selector, algorithm, key file or None)`` for every configured selector."""
    out: list[tuple[str, str, Path | None]] = []
    for selector, algorithm in cfg.dkim.keys.items():
        found = sorted(glob.glob(str(cfg.data_dir / "dkim" / f"{glob.escape(selector)}.*key")))
        out.append((selector, algorithm, Path(found[0]) if found else None))
    return out


def domain_records(cfg: Config, domain: str) -> list[Record]:
    """Every record of one mail domain (DKIM excluded: see :func:`records`)."""
    hosts = public_hosts(cfg)
    p = cfg.public
    rua = f"mailto:{report_address(cfg)}"
    recs = [
        Record(domain, "MX", f"{10 * (i + 1)} {_fqdn(h)}", comment="inbound mail" if i == 0 else "")
        for i, h in enumerate(mx_hosts(cfg))
    ]
    recs += [
        Record(domain, "TXT", "v=spf1 mx -all", comment="SPF: only the MX hosts send for this domain"),
        Record(f"_dmarc.{domain}", "TXT", f"v=DMARC1; p={p.dmarc_policy}; rua={rua}; adkim=r; aspf=r",
               comment="DMARC"),
        Record(f"_submissions._tcp.{domain}", "SRV", f"0 1 {p.submissions_port} {_fqdn(hosts['smtp'])}",
               comment="client set-up (RFC 6186, RFC 8314): submission over TLS first"),
        Record(f"_submission._tcp.{domain}", "SRV", f"10 1 {p.submission_port} {_fqdn(hosts['smtp'])}"),
        Record(f"_imaps._tcp.{domain}", "SRV", f"0 1 {p.imaps_port} {_fqdn(hosts['imap'])}"),
        Record(f"_imap._tcp.{domain}", "SRV", f"10 1 {p.imap_port} {_fqdn(hosts['imap'])}"),
        Record(f"_mta-sts.{domain}", "TXT", f"v=STSv1; id={mta_sts_id(cfg)}",
               comment=f"MTA-STS: policy at https://mta-sts.{domain}/.well-known/mta-sts.txt"),
        Record(f"_smtp._tls.{domain}", "TXT", f"v=TLSRPTv1; rua={rua}", comment="TLS-RPT"),
        Record(f"mta-sts.{domain}", "CNAME", _fqdn(hosts["web"]),
               comment="HTTPS host serving the MTA-STS policy and autoconfig"),
        Record(f"autoconfig.{domain}", "CNAME", _fqdn(hosts["web"])),
        Record(f"_autodiscover._tcp.{domain}", "SRV", f"0 1 443 {_fqdn(hosts['web'])}"),
    ]
    return recs


def dkim_records(cfg: Config) -> tuple[list[Record], list[str]]:
    """DKIM TXT records of ``mail.domain`` and the selectors that have no key file yet."""
    recs: list[Record] = []
    missing: list[str] = []
    for selector, algorithm, path in dkim_keys(cfg):
        if path is None:
            missing.append(selector)
            continue
        value = dns_record(path.read_bytes(), algorithm)
        recs.append(Record(dns_name(selector, cfg.mail.domain), "TXT", value, chunks=txt_chunks(value),
                           comment=f"DKIM {algorithm}, key {path.name}"))
    return recs, missing


def records(cfg: Config) -> dict[str, Any]:
    """Everything ``esam dns`` prints: records, the MTA-STS policy, missing DKIM keys."""
    recs: list[Record] = []
    missing: list[str] = []
    for domain in cfg.local_domains:
        recs += domain_records(cfg, domain)
        if domain == cfg.mail.domain.lower():
            dkim, missing = dkim_records(cfg)
            recs += dkim
    return {"records": recs, "mta_sts_policy": mta_sts_policy(cfg), "dkim_missing": missing}


def zone_text(data: dict[str, Any]) -> str:
    """``records()`` as a zone-file fragment with the policy file as a comment."""
    out = ["; DNS records for esam_mail (paste into the zone; names are fully qualified)"]
    for r in data["records"]:
        out.append(r.zone_line())
    for sel in data["dkim_missing"]:
        out.append(f"; DKIM selector {sel}: no key file yet, run `esam init` or `esam dkim keygen`")
    out.append(";")
    out.append("; MTA-STS policy file, served at /.well-known/mta-sts.txt by the HTTP listener:")
    out += [f";   {line}" for line in data["mta_sts_policy"].splitlines()]
    return "\n".join(out) + "\n"
