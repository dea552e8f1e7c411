"""Configuration: one TOML file, a typed schema that is also the documentation.

Every section is a frozen dataclass; every field carries its default and a
``doc`` string in its metadata.  ``conf/esam.toml`` is generated from this
schema (``esam config-example``) and a unit test keeps it current.

``load(path)`` collects *every* problem (``dotted.key: message (hint)``),
rejects unknown keys and raises :class:`~esam_mail.errors.ConfigError`; the
CLI prints the list and exits 78 (EX_CONFIG).  Nothing reads the config
globally: the composition root (``app.py``) passes sections to constructors.

Relative paths are resolved against the current working directory, except
paths inside ``data_dir`` defaults, which follow ``server.data_dir``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esam_mail.errors import ConfigError
from esam_mail.errors import Problem as P_
from esam_mail.i18n import N_

EX_CONFIG = 78


def _f(default: Any, doc: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=functools.partial(copy.copy, default), metadata={"doc": doc, **kw})
    return field(default=default, metadata={"doc": doc, **kw})


@dataclass(frozen=True)
class ServerConfig:
    hostname: str = _f(
        "localhost",
        "Host name used in the SMTP greeting, Received headers and "
        "the IMAP greeting; set it to the public MX/IMAP host name.",
    )
    data_dir: str = _f(
        "data",
        "Folder for the mailboxes, the queue, the SQLite directory, keys "
        "and the dev TLS certificate. Created by `esam init`.",
    )
    log_level: str = _f(
        "info",
        "One of trace, debug, info, warning, error. `trace` logs "
        "protocol transcripts with credentials redacted.",
        choices=("trace", "debug", "info", "warning", "error"),
    )
    log_file: str = _f("", "Log to this file instead of standard error (logfmt lines).")
    uvloop: bool = _f(False, "Run the event loop on uvloop: faster SMTP transports (see "
                      "docs/benchmarks.md). Needs a restart.")
    workers: int = _f(1, "Worker processes sharing the listening sockets (SO_REUSEPORT).", min=1, max=64)
    cpu_affinity: bool = _f(
        True,
        "With 2 or more worker processes and at least one CPU each: run worker i on the "
        "i-th CPU (its event loop and mailbox threads share the GIL, and a handover between "
        "CPUs costs a cross-CPU wake-up; password hashing still runs on any CPU). See "
        "docs/benchmarks.md. Needs a restart.",
    )
    roles: str = _f(
        "",
        "Run the roles in separate processes: comma-separated groups of smtp, imap and http "
        "(\"+\" keeps roles in one process), e.g. \"smtp,imap,http\" or \"smtp+http,imap\"; "
        "each group gets `workers` processes. Empty: everything in one process. The smtp "
        "role also runs the outbound queue. See docs/scaling.md (Splitting roles).",
    )
    shutdown_grace: float = _f(
        30.0,
        "Seconds `serve` waits for in-flight SMTP transactions and queue deliveries after SIGTERM/SIGINT.",
        min=0,
    )


@dataclass(frozen=True)
class MailConfig:
    domain: str = _f("esam.localhost", "The operator's mail domain: addresses are login@domain.")
    extra_domains: list[str] = _f([], "Further domains accepted as local (aliases of `domain`).")
    reserved_names: list[str] = _f(
        [], "Operator-specific user names that can never be registered, on top of the RFC 2142 role names."
    )
    reserved_names_file: str = _f(
        "",
        "Operator file of further reserved and protected names (format of conf/reserved-names.txt: "
        "one name or *pattern* a line). Added on top of the shipped list conf/reserved-names.txt "
        "(state bodies, the operator's services), which always applies.",
    )
    default_quota_mb: int = _f(1024, "Default mailbox quota in MiB (0 = unlimited).", min=0)


@dataclass(frozen=True)
class AliasesConfig:
    operator_mailbox: str = _f(
        "operator",
        "Login of the operator's mailbox that `esam init` points the role aliases at; `esam init` "
        "creates it as a service mailbox if missing (no usable password until `esam passwd`).",
    )
    roles: list[str] = _f(
        ["postmaster", "abuse", "hostmaster"],
        "Role addresses `esam init` creates as aliases of `operator_mailbox` (RFC 5321 4.5.1 "
        "postmaster, RFC 2142 abuse and hostmaster); aliases that exist are left as they are. "
        "Manage aliases with `esam alias add|list|remove`.",
    )


@dataclass(frozen=True)
class ListenConfig:
    smtp: str = _f(
        "127.0.0.1:2525",
        "MX listener (inbound mail from other operators, no "
        "AUTH). Production: 0.0.0.0:25. Empty string disables it.",
    )
    submission: str = _f("127.0.0.1:2587", "Submission with STARTTLS (RFC 6409). Production: 0.0.0.0:587.")
    submissions: str = _f(
        "127.0.0.1:2465", "Submission over implicit TLS (RFC 8314). Production: 0.0.0.0:465."
    )
    imap: str = _f(
        "127.0.0.1:1143", "IMAP with STARTTLS; LOGIN is disabled before TLS. Production: 0.0.0.0:143."
    )
    imaps: str = _f("127.0.0.1:1993", "IMAP over implicit TLS. Production: 0.0.0.0:993.")
    http: str = _f(
        "127.0.0.1:8080", "HTTP: online applications, EDS confirmation, autoconfig, /metrics, /healthz."
    )


@dataclass(frozen=True)
class TLSConfig:
    cert: str = _f(
        "",
        "PEM certificate chain. Empty: a self-signed certificate is made in "
        "<data_dir>/tls on first start (development only).",
    )
    key: str = _f("", "PEM private key for `cert`.")
    min_version: str = _f("TLSv1.2", "Lowest TLS version accepted.", choices=("TLSv1.2", "TLSv1.3"))


@dataclass(frozen=True)
class DirectoryConfig:
    url: str = _f(
        "",
        "SQLAlchemy URL of the directory database. Empty: SQLite at "
        "<data_dir>/directory.db. Scale-out: postgresql+asyncpg://user@host/db.",
    )
    pool_size: int = _f(5, "Connections per process (PostgreSQL).", min=1)


@dataclass(frozen=True)
class StoreConfig:
    path: str = _f("", "Root of the Maildir tree. Empty: <data_dir>/mail.")
    fsync: bool = _f(
        True,
        "fsync messages and folders before acknowledging. Never turn this "
        "off in production: a 250 reply then no longer means the mail is safe.",
    )


@dataclass(frozen=True)
class AuthConfig:
    argon2_memory_kib: int = _f(65536, "argon2id memory cost (KiB) for new password hashes.", min=8)
    argon2_time_cost: int = _f(3, "argon2id iterations.", min=1)
    argon2_parallelism: int = _f(4, "argon2id lanes.", min=1)
    hash_workers: int = _f(
        4, "Threads checking password hashes (each argon2 check needs argon2_memory_kib of RAM).", min=1
    )
    cache_seconds: int = _f(
        60,
        "Remember a successful login this long (keyed by a fast "
        "salted hash of the password, so a hit still proves it); 0 = off.",
        min=0,
    )
    cache_max_seconds: int = _f(
        3600,
        "An active user's remembered login is renewed on use, but the password is really "
        "checked again at least this often.",
        min=0,
    )
    cache_slots: int = _f(
        65536, "Entries in the login cache shared by the node's workers (48 bytes each).", min=1, max=16777216
    )
    max_failures: int = _f(10, "Failed logins per account or per IP before a temporary lock.", min=1)
    lock_seconds: int = _f(300, "Duration of that temporary lock.", min=1)


@dataclass(frozen=True)
class SMTPConfig:
    max_message_size: int = _f(50 * 1024 * 1024, "Largest message accepted, bytes (SIZE).", min=1024)
    max_recipients: int = _f(100, "Recipients per message.", min=1)
    timeout: int = _f(300, "Idle seconds before a session is closed (RFC 5321 4.5.3.2).", min=1)
    max_commands: int = _f(1000, "Commands per session before 421.", min=10)
    max_connections_per_ip: int = _f(50, "Concurrent SMTP sessions from one IP.", min=1)


@dataclass(frozen=True)
class IMAPConfig:
    max_literal_size: int = _f(50 * 1024 * 1024, "Largest literal (APPEND) accepted, bytes.", min=1024)
    idle_timeout: int = _f(
        1800,
        "Seconds of inactivity before an IMAP session is closed (RFC 3501: at least 30 minutes).",
        min=60,
    )
    max_connections_per_ip: int = _f(100, "Concurrent IMAP sessions from one IP.", min=1)
    store_workers: int = _f(
        2,
        "Threads per process that do the mailbox work of IMAP sessions (Maildir reads, "
        "index sync, SEARCH, flag renames, fsync) off the event loop; calls for one "
        "folder run one at a time. They share the GIL with the event loop: more threads "
        "only help where the work waits on the disk (slow or network storage); on local "
        "disks 4 cost more CPU per command than 2.",
        min=1, max=64,
    )
    spool_threshold: int = _f(
        65536,
        "APPEND literals larger than this many bytes are written to the user's tmp/ "
        "as they arrive instead of being held in memory.",
        min=1024,
    )


@dataclass(frozen=True)
class DKIMConfig:
    sign: bool = _f(True, "DKIM-sign every message submitted by a subscriber.")
    keys: dict[str, str] = _f(
        {"esam-rsa": "rsa-sha256", "esam-ed": "ed25519-sha256"},
        "Selector -> algorithm (rsa-sha256 or ed25519-sha256). Keys live in "
        "<data_dir>/dkim/<selector>.<kind>.key, made by `esam init` or `esam dkim keygen`.",
    )


@dataclass(frozen=True)
class OutboundConfig:
    transport: dict[str, str] = _f(
        {}, "Static next hops: domain -> host:port ('*' = smarthost). Domains not listed are resolved by MX."
    )
    retry_base: int = _f(60, "First retry after this many seconds; doubles each time.", min=1)
    retry_max: int = _f(3600, "Longest wait between retries, seconds.", min=1)
    delay_warning: int = _f(4 * 3600, "Send a delay notice after this many seconds.", min=0)
    expire: int = _f(5 * 86400, "Bounce (RFC 3464) after this many seconds.", min=60)
    connections_per_domain: int = _f(4, "Concurrent outbound connections per domain.", min=1)
    require_tls: bool = _f(False, "Refuse to deliver without STARTTLS.")


@dataclass(frozen=True)
class InboundConfig:
    verify: bool = _f(True, "Evaluate SPF, DKIM and DMARC for every message arriving on the MX "
                      "and record them in an Authentication-Results header (RFC 8601).")
    dmarc_reject: bool = _f(True, "Reject (550 5.7.1) messages failing DMARC when the sender's "
                            "domain publishes p=reject.")
    dns_timeout: float = _f(5.0, "Seconds one DNS lookup may take in total, for every lookup of the "
                            "process (SPF, DKIM, DMARC, outbound MX); see [dns].", min=0.1)


@dataclass(frozen=True)
class DNSConfig:
    nameservers: list[str] = _f(
        [], 'Resolvers to ask, "ip" or "ip:port"; empty: the system\'s /etc/resolv.conf. One '
        "cached resolver per process serves SPF, DKIM, DMARC and outbound MX lookups "
        "(`inbound.dns_timeout` is the total time one lookup may take)."
    )
    timeout: float = _f(2.0, "Seconds to wait for one nameserver before asking the next.", min=0.1)
    cache_entries: int = _f(10000, "DNS answers kept in memory (positive for their TTL, negative for "
                            "the SOA's negative TTL, RFC 2308).", min=0)
    servfail_ttl: float = _f(30.0, "Seconds a failed lookup (SERVFAIL, timeout) is answered from memory "
                             "as a temporary error instead of asked again (RFC 2308 7.1; 0 = never).",
                             min=0, max=300)


@dataclass(frozen=True)
class RegistrationConfig:
    agreement_file: str = _f("conf/agreement.txt", "User agreement text shown to applicants "
                             "(`esam agreement show`); its SHA-256 is recorded with every consent.")
    agreement_version: str = _f("2026-1", "Label of the agreement version in `agreement_file`.")
    one_mailbox_per_iin: bool = _f(True, "At most one open personal mailbox per IIN.")
    registry: str = _f(
        "offline",
        "State-registry verifier: 'offline' (structural checks only) "
        "or 'file' (a CSV/JSON extract at registry_file).",
        choices=("offline", "file"),
    )
    registry_file: str = _f("", "Registry extract for registry = 'file'.")
    registry_policy: str = _f("accept", "When the registry cannot confirm (always, with the offline "
                              "verifier): accept (the office employee has checked the identity "
                              "document; online applicants are identified by their EDS), hold for a "
                              "manual check (`esam mailbox approve`), or reject.",
                              choices=("reject", "hold", "accept"))


@dataclass(frozen=True)
class EDSConfig:
    trust_anchors: list[str] = _f([], "PEM files of trusted root certificates (NCA roots).")
    revocation: str = _f(
        "off",
        "Revocation checking: off, crl (CRL files and crl_urls) or ocsp (ocsp_url, or the "
        "certificate's AIA responder). Applies to new signatures and to the re-checks of "
        "EDS-confirmed mailboxes.",
        choices=("off", "crl", "ocsp"),
    )
    crl_files: list[str] = _f([], "CRL files used when revocation = 'crl'.")
    crl_urls: list[str] = _f([], "CRLs fetched over HTTP by the re-check when revocation = 'crl'.")
    ocsp_url: str = _f("", "OCSP responder (RFC 6960) used when revocation = 'ocsp'. Empty: the "
                       "certificate's Authority Information Access URL.")
    recheck_interval: int = _f(
        3600, "Seconds between re-checks of EDS confirmations (expiry, revocation); 0 = never.", min=0
    )
    network_timeout: float = _f(10.0, "Seconds an OCSP or CRL fetch may take.", min=0.1)
    test_ca_mode: bool = _f(False, "Staging only: trust exactly the NCA-shaped test PKI made by `esam eds "
                            "test-pki init` (<data_dir>/eds/test-pki/root.pem) and nothing else; leave "
                            "trust_anchors empty. Its certificates carry valid IINs/BINs. Never in production.")
    challenge_ttl: int = _f(300, "Seconds an EDS challenge stays valid.", min=10)


@dataclass(frozen=True)
class OfficialConfig:
    """The official electronic documents channel (rules, paragraphs 12-13)."""

    enabled: bool = _f(True, "Accept official documents from registered senders.")
    operator_cert: str = _f("", "PEM certificate of the operator's evidence key. Empty: "
                            "<data_dir>/official/operator-cert.pem, made by `esam init`.")
    operator_key: str = _f("", "PEM private key signing evidence (and documents signed on a "
                           "sender's behalf). Empty: <data_dir>/official/operator-key.pem.")
    max_document_bytes: int = _f(
        1536 * 1024, "Largest document accepted (the HTTP API also caps a request at 2 MiB of JSON).", min=1024
    )
    retrieval_days: int = _f(
        14, "Days the recipient has to open a delivered document before EXPIRED evidence is issued.",
        min=1,
    )
    document_retention_days: int = _f(
        365, "Days the operator keeps its copy of each delivered document.", min=1
    )
    evidence_retention_days: int = _f(
        3650, "Days evidence records are kept (longer than documents).", min=1
    )
    sweep_interval: int = _f(
        60, "Seconds between sweeps for retrievals, expired deadlines and retention.", min=1
    )
    signature_max_skew: int = _f(
        300, "Seconds a signed API request (RFC 9421 `created`) may be old.", min=10
    )
    client_cert_header: str = _f(
        "", "Header in which the TLS-terminating reverse proxy passes the SHA-256 fingerprint of a "
        "verified client certificate (e.g. X-SSL-Client-SHA256). Empty: client certificates are not "
        "used; senders sign their requests. Set it only when the proxy is the sole way in and "
        "overwrites the header.",
    )


@dataclass(frozen=True)
class StaffConfig:
    """Staff accounts and the CLI's audit actors."""

    cli_administrators: list[str] = _f(
        ["root"],
        "OS user names that may give a free-text --actor to the CLI. Others are recorded as "
        "os:<user> (or as the staff account bound to their OS user).",
    )


@dataclass(frozen=True)
class HybridConfig:
    enabled: bool = _f(True, "Accept hybrid (e-mail -> paper) sendings.")
    gateway: str = _f("paper", "Local part of the hybrid gateway address (paper@domain).")
    max_pages: int = _f(20, "Most pages of a printed letter.", min=1)
    facilities: dict[str, str] = _f(
        {"*": "ALA01"}, "Postcode prefix -> production facility code; '*' is the default facility."
    )
    tracking_prefix: str = _f("RR", "Two-letter UPU S10 service indicator.")
    merged_pdf: bool = _f(False, "Also write one merged.pdf (with page ranges) into each closed batch.")
    max_scan_pages: int = _f(50, "Most pages of a scanned paper letter (`esam hybrid ingest`).", min=1)
    return_centre: str = _f(
        "",
        "Postal return address printed on letters whose sender has none on file (service mailboxes): "
        "the operator's return centre, one line, e.g. \"АО «Казпочта», центр возврата, пр. Мәңгілік Ел 55, "
        "Астана, Z05T3E2\". Subscribers' letters carry their own residence/actual address. Empty: the "
        "sender's e-mail address (no postal way back).",
    )


@dataclass(frozen=True)
class PublicConfig:
    """What clients and other servers are told (autoconfig, autodiscover, `esam dns`),
    as opposed to the bind addresses of [listen]."""

    imap_host: str = _f("", "Host name mail clients use for IMAP. Empty: server.hostname.")
    smtp_host: str = _f("", "Host name mail clients use for submission. Empty: server.hostname.")
    mx_hosts: list[str] = _f([], "MX host names, most preferred first (MX, MTA-STS). Empty: [server.hostname].")
    web_host: str = _f(
        "",
        "HTTPS host (a reverse proxy in front of listen.http) that autoconfig.<domain>, "
        "mta-sts.<domain> and autodiscover point to. Empty: server.hostname.",
    )
    imaps_port: int = _f(
        0, "Public IMAP port with implicit TLS. 0: the port of listen.imaps (993 when that is 0 or off).",
        min=0, max=65535,
    )
    imap_port: int = _f(
        0, "Public IMAP port with STARTTLS. 0: the port of listen.imap (143 when that is 0 or off).",
        min=0, max=65535,
    )
    submissions_port: int = _f(
        0, "Public submission port with implicit TLS. 0: the port of listen.submissions (465 when that "
        "is 0 or off).", min=0, max=65535,
    )
    submission_port: int = _f(
        0, "Public submission port with STARTTLS. 0: the port of listen.submission (587 when that is 0 "
        "or off).", min=0, max=65535,
    )
    display_name: str = _f("", "Provider name shown by mail clients. Empty: mail.domain.")
    report_address: str = _f("", "Mailbox for DMARC and TLS-RPT reports. Empty: postmaster@<mail.domain>.")
    dmarc_policy: str = _f(
        "quarantine", "DMARC p= advertised by `esam dns`.", choices=("none", "quarantine", "reject")
    )
    mta_sts_mode: str = _f(
        "testing", "MTA-STS policy mode (RFC 8461); move to enforce once TLS-RPT reports are clean.",
        choices=("none", "testing", "enforce"),
    )
    mta_sts_max_age: int = _f(604800, "MTA-STS policy max_age, seconds.", min=86400, max=31557600)


@dataclass(frozen=True)
class WebConfig:
    """The operator's web pages (served on listen.http, behind a TLS reverse proxy)."""

    trusted_proxies: list[str] = _f(
        [],
        "Addresses of reverse proxies whose X-Forwarded-For/-Proto are believed (client address for "
        "brute-force limits and login history; HTTPS for Secure cookies). Empty: none.",
    )
    session_idle: int = _f(1800, "Seconds a web session lives without a request.", min=60, max=86400)
    support_email: str = _f("", "Support address shown on the pages. Empty: support@<mail.domain>.")
    support_phone: str = _f("", "Support telephone shown on the pages. Empty: not shown.")
    close_cooling_days: int = _f(
        14, "Days between a subscriber's request to close the mailbox and its closing (they can cancel "
        "and download the export of their mail meanwhile).", min=0, max=365,
    )
    send_stall_timeout: float = _f(
        60.0, "Seconds a response may wait for the client to take any of its bytes (a client that stops "
        "reading a download) before the connection is dropped and its buffers freed.", min=0.1, max=3600,
    )


@dataclass(frozen=True)
class RetentionConfig:
    """How long content is kept (`esam retention run [--dry-run]`); 0 keeps it for ever. Mailbox rows
    are never purged: a login, once issued, stays reserved. Official evidence: [official]. The
    audit log is kept for ever: it is append-only in the database itself (R12)."""

    closed_mail_days: int = _f(365, "Days after a mailbox is closed before its mail (the Maildir) is "
                               "deleted.", min=0)
    applications_days: int = _f(1825, "Days after the last mailbox of a subscriber is closed before "
                                "the applications, their EDS signatures, consent records and the "
                                "subscriber's form data are deleted.", min=0)
    hybrid_days: int = _f(365, "Days closed print jobs (PDFs, manifests), item records and event logs of "
                          "finished hybrid items (and scans' events) are kept.", min=0)


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    aliases: AliasesConfig = field(default_factory=AliasesConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    directory: DirectoryConfig = field(default_factory=DirectoryConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    imap: IMAPConfig = field(default_factory=IMAPConfig)
    dkim: DKIMConfig = field(default_factory=DKIMConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    inbound: InboundConfig = field(default_factory=InboundConfig)
    dns: DNSConfig = field(default_factory=DNSConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    eds: EDSConfig = field(default_factory=EDSConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    official: OfficialConfig = field(default_factory=OfficialConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    staff: StaffConfig = field(default_factory=StaffConfig)
    public: PublicConfig = field(default_factory=PublicConfig)
    web: WebConfig = field(default_factory=WebConfig)
    source: str = field(default="", metadata={"internal": True})

    def __post_init__(self) -> None:
        # A public port left at 0 is the port the listener is configured on, so what
        # autoconfig, autodiscover and `esam dns` advertise matches what is served (a
        # development config on 1993/2587 advertises 1993/2587); the standard port when
        # the listener uses port 0 or is off.  Resolved here, so every reader sees a number.
        resolved: dict[str, Any] = {}
        for key, listener, standard in _PUBLIC_PORTS:
            if getattr(self.public, key) == 0:
                try:
                    port = parse_hostport(getattr(self.listen, listener))[1]
                except ValueError:  # off ("") or malformed (check-config reports it)
                    port = 0
                resolved[key] = port or standard
        if resolved:
            object.__setattr__(self, "public", dataclasses.replace(self.public, **resolved))

    # -- derived paths ---------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir).absolute()

    @property
    def store_path(self) -> Path:
        return Path(self.store.path).absolute() if self.store.path else self.data_dir / "mail"

    @property
    def directory_url(self) -> str:
        return self.directory.url or f"sqlite+aiosqlite:///{self.data_dir / 'directory.db'}"

    @property
    def tls_cert(self) -> Path:
        return Path(self.tls.cert).absolute() if self.tls.cert else self.data_dir / "tls/cert.pem"

    @property
    def tls_key(self) -> Path:
        return Path(self.tls.key).absolute() if self.tls.key else self.data_dir / "tls/key.pem"

    @property
    def local_domains(self) -> list[str]:
        return [self.mail.domain.lower(), *(d.lower() for d in self.mail.extra_domains)]

    @property
    def operator_cert(self) -> Path:
        c = self.official.operator_cert
        return Path(c).absolute() if c else self.data_dir / "official" / "operator-cert.pem"

    @property
    def operator_key(self) -> Path:
        k = self.official.operator_key
        return Path(k).absolute() if k else self.data_dir / "official" / "operator-key.pem"

    @property
    def agreement_path(self) -> Path:
        return Path(self.registration.agreement_file).absolute()


SECTIONS: dict[str, type] = {
    f.name: f.type if isinstance(f.type, type) else globals()[str(f.type)]
    for f in dataclasses.fields(Config)
    if not f.metadata.get("internal")
}

_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):(\d{1,5})$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)


#: public port key, the [listen] key it follows, the standard port (RFC 8314, RFC 6409, RFC 9051)
_PUBLIC_PORTS = (
    ("imaps_port", "imaps", 993),
    ("imap_port", "imap", 143),
    ("submissions_port", "submissions", 465),
    ("submission_port", "submission", 587),
)


ROLES = ("smtp", "imap", "http")


def parse_roles(value: str) -> list[frozenset[str]]:
    """``"smtp+http,imap"`` -> ``[{"smtp", "http"}, {"imap"}]``; ``""`` -> one group of all.

    Raises:
        ValueError: an unknown role, an empty group, or a role in two groups; the
            message (a :class:`~esam_mail.errors.Problem`) names ``server.roles``.
    """
    if not value.strip():
        return [frozenset(ROLES)]
    groups: list[frozenset[str]] = []
    seen: set[str] = set()
    for raw in value.split(","):
        names = [n.strip().lower() for n in raw.split("+")]
        if not all(names):
            raise ValueError(P_("server.roles", 'empty role in {value!r} (use e.g. "smtp,imap,http")', value=value))
        bad = [n for n in names if n not in ROLES]
        if bad:
            raise ValueError(P_("server.roles", "unknown role {role!r} (roles: smtp, imap, http)", role=bad[0]))
        twice = seen.intersection(names)
        if twice:
            raise ValueError(P_("server.roles", "role {role!r} is in two groups", role=sorted(twice)[0]))
        seen.update(names)
        groups.append(frozenset(names))
    return groups


def parse_hostport(value: str) -> tuple[str, int]:
    """'127.0.0.1:2525' -> ('127.0.0.1', 2525); '[::1]:25' -> ('::1', 25)."""
    m = _HOSTPORT.match(value)
    if not m:
        raise ValueError(value)
    host = m.group(1).strip("[]") or "0.0.0.0"
    return host, int(m.group(2))


def _check_type(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_check_type(v, item) for v in value)
    if origin is dict:
        k, v = typing.get_args(tp)
        return isinstance(value, dict) and all(
            _check_type(a, k) and _check_type(b, v) for a, b in value.items()
        )
    if isinstance(tp, types.UnionType):
        return any(_check_type(value, t) for t in typing.get_args(tp))
    return False


def _type_msgid(tp: Any) -> str:
    """The problem of a value of the wrong type (one msgid per type: each reads as a sentence)."""
    return {bool: N_("must be true or false, got {value!r}"), int: N_("must be an integer, got {value!r}"),
            float: N_("must be a number, got {value!r}"), str: N_("must be a string, got {value!r}")}.get(
        tp, N_("must be a list of strings, got {value!r}") if typing.get_origin(tp) is list
        else N_("must be a table of strings, got {value!r}")
    )


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(raw: dict[str, Any], source: str = "") -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    problems: list[str] = []  # Problem (a str) each: key, msgid, params
    sections: dict[str, Any] = {}
    for key in raw:
        if key not in SECTIONS:
            problems.append(P_(key, "unknown section (known: {known})", known=", ".join(SECTIONS)))
    for name, cls in SECTIONS.items():
        given = raw.get(name, {})
        if not isinstance(given, dict):
            problems.append(P_(name, "must be a table ([{name}])", name=name))
            given = {}
        hints = _hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in given.items():
            dotted = f"{name}.{key}"
            if key not in fields:
                import difflib

                near = difflib.get_close_matches(key, list(fields), n=1)
                problems.append(P_(dotted, "unknown key (did you mean {near}?)", near=near[0]) if near
                                else P_(dotted, "unknown key"))
                continue
            meta = fields[key].metadata
            tp = hints[key]
            if not _check_type(value, tp):
                problems.append(P_(dotted, _type_msgid(tp), value=value))
                continue
            if "choices" in meta and value not in meta["choices"]:
                problems.append(P_(dotted, "must be one of {choices}, got {value!r}",
                                   choices=", ".join(meta["choices"]), value=value))
                continue
            if "min" in meta and value < meta["min"]:
                problems.append(P_(dotted, "must be at least {min}, got {value}", min=meta["min"], value=value))
                continue
            if "max" in meta and value > meta["max"]:
                problems.append(P_(dotted, "must be at most {max}, got {value}", max=meta["max"], value=value))
                continue
            values[key] = value
        try:
            sections[name] = cls(**values)
        except TypeError as exc:  # pragma: no cover - schema bug
            problems.append(f"{name}: {exc}")
    # The cross-key checks run even when single keys were refused (those keep their
    # defaults here), so one run reports every problem; a key already reported is not
    # reported twice.
    cfg = Config(**sections, source=source)
    reported = {p.split(":", 1)[0] for p in problems}
    problems.extend(
        p for p in _semantic_checks(cfg)
        if not any(p.split(":", 1)[0] == k or p.startswith((f"{k}.", f"{k}[")) for k in reported)
    )
    if not problems:
        return cfg
    raise ConfigError(problems)


def _semantic_checks(cfg: Config) -> list[str]:
    problems: list[str] = []
    try:
        parse_roles(cfg.server.roles)
    except ValueError as exc:
        problems.append(exc.args[0])
    for f in dataclasses.fields(ListenConfig):
        value = getattr(cfg.listen, f.name)
        if value:
            try:
                _, port = parse_hostport(value)
                if port > 65535:
                    raise ValueError
            except ValueError:
                problems.append(P_(f"listen.{f.name}",
                                   '{value!r} is not host:port (hint: "127.0.0.1:2525", "[::]:25", "" to disable)',
                                   value=value))
    for i, ns in enumerate(cfg.dns.nameservers):
        import ipaddress

        text = ns.strip()
        host, _, port_text = text.rpartition(":") if text.count(":") == 1 or text.startswith("[") else (text, "", "53")
        try:
            ipaddress.ip_address(host.strip("[]"))
            if not 0 < int(port_text or "x") < 65536:
                raise ValueError
        except ValueError:
            problems.append(P_(f"dns.nameservers[{i}]", '{value!r} is not an IP address with an optional port '
                               '(hint: "192.0.2.53", "127.0.0.1:5353", "[2001:db8::53]:53")', value=ns))
    for key, dom in [("mail.domain", cfg.mail.domain)] + [
        (f"mail.extra_domains[{i}]", d) for i, d in enumerate(cfg.mail.extra_domains)
    ]:
        if not _DOMAIN.match(dom.lower()):
            problems.append(P_(key, '{value!r} is not a domain name (hint: "mail.example.kz")', value=dom))
    if bool(cfg.tls.cert) != bool(cfg.tls.key):
        problems.append(P_("tls.cert", "cert and key must be given together (or both left empty "
                              "for a self-signed development certificate)"))
    for key, path in (("tls.cert", cfg.tls.cert), ("tls.key", cfg.tls.key)):
        if path and not os.access(path, os.R_OK):
            problems.append(P_(key, "cannot read {path!r}", path=path))
    url = cfg.directory.url
    if url and not (url.startswith("sqlite+aiosqlite://") or url.startswith("postgresql+asyncpg://")):
        problems.append(P_("directory.url", "unsupported driver in {driver!r} (hint: "
                           "sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db)",
                           driver=url.split(":")[0]))
    for dom, hop in cfg.outbound.transport.items():
        try:
            parse_hostport(hop)
        except ValueError:
            problems.append(P_(f"outbound.transport.{dom}", "{value!r} is not host:port", value=hop))
    for i, p in enumerate(cfg.eds.trust_anchors):
        if not os.access(p, os.R_OK):
            problems.append(P_(f"eds.trust_anchors[{i}]", "cannot read {path!r}", path=p))
    if cfg.registration.registry == "file" and not cfg.registration.registry_file:
        problems.append(P_("registration.registry_file", "required when registration.registry = 'file'"))
    if cfg.mail.reserved_names_file and not os.access(cfg.mail.reserved_names_file, os.R_OK):
        problems.append(P_("mail.reserved_names_file", "cannot read {path!r}", path=cfg.mail.reserved_names_file))
    if not os.access(cfg.registration.agreement_file, os.R_OK):
        problems.append(P_("registration.agreement_file", "cannot read {path!r}",
                           path=cfg.registration.agreement_file))
    for sel, alg in cfg.dkim.keys.items():
        if alg not in ("rsa-sha256", "ed25519-sha256"):
            problems.append(P_(f"dkim.keys.{sel}", "{value!r} is not rsa-sha256 or ed25519-sha256", value=alg))
    if not re.fullmatch(r"[A-Z]{2}", cfg.hybrid.tracking_prefix):
        problems.append(P_("hybrid.tracking_prefix", 'two capital letters, e.g. "RR"'))
    if not re.fullmatch(r"[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?", cfg.hybrid.gateway):
        problems.append(P_("hybrid.gateway", 'a lower-case local part, e.g. "paper"'))
    for prefix, code in cfg.hybrid.facilities.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", code):
            problems.append(P_(f"hybrid.facilities.{prefix}", "{value!r} is not a facility code (A-Z, 0-9, _ -)",
                               value=code))
    if "*" not in cfg.hybrid.facilities:
        problems.append(P_("hybrid.facilities", 'needs a default facility under "*"'))
    if bool(cfg.official.operator_cert) != bool(cfg.official.operator_key):
        problems.append(P_("official.operator_cert", "cert and key must be given together (or both left "
                           "empty for the key `esam init` makes)"))
    for key, path in (("official.operator_cert", cfg.official.operator_cert),
                      ("official.operator_key", cfg.official.operator_key)):
        if path and not os.access(path, os.R_OK):
            problems.append(P_(key, "cannot read {path!r}", path=path))
    for key, url in [("eds.ocsp_url", cfg.eds.ocsp_url)] + [
        (f"eds.crl_urls[{i}]", u) for i, u in enumerate(cfg.eds.crl_urls)
    ]:
        if url and not re.match(r"^https?://", url):
            problems.append(P_(key, '{value!r} is not an http(s) URL (hint: "http://ocsp.pki.gov.kz")', value=url))
    if cfg.outbound.retry_max < cfg.outbound.retry_base:
        problems.append(P_("outbound.retry_max", "must not be below outbound.retry_base"))
    return problems


def load(path: str | os.PathLike[str] | None) -> Config:
    """Load the config file at ``path`` (or $ESAM_CONFIG); no file means defaults."""
    if path is None:
        path = os.environ.get("ESAM_CONFIG") or None
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([P_(str(p), "cannot read the config file ({reason})", reason=exc.strerror)]) from None
    except UnicodeDecodeError:
        raise ConfigError([P_(str(p), "not UTF-8")]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([P_(str(p), "TOML syntax error: {detail}", detail=exc)]) from None
    return from_dict(raw, source=str(p))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def example(overrides: dict[str, dict[str, Any]] | None = None) -> str:
    """The documented example config: every key, its default and its meaning."""
    import textwrap

    overrides = overrides or {}
    out = [
        "# esam_mail configuration (TOML). Generated by `esam config-example`;",
        "# every key is shown with its default. Relative paths are relative to the",
        "# working directory of `esam`. Check a file with `esam -c FILE check-config`.",
        "",
    ]
    for name, cls in SECTIONS.items():
        out.append(f"[{name}]")
        inst = cls()
        for f in dataclasses.fields(cls):
            doc = f.metadata.get("doc", "")
            for line in textwrap.wrap(doc, 90):
                out.append(f"# {line}")
            default = getattr(inst, f.name)
            out.append(f"# default: {_toml_value(default)}")
            if f.name in overrides.get(name, {}):
                out.append(f"{f.name} = {_toml_value(overrides[name][f.name])}")
            else:
                out.append(f"#{f.name} = {_toml_value(default)}")
        out.append("")
    return "\n".join(out)


#: The values conf/esam.toml sets on top of the defaults (development quick start).
DEV_OVERRIDES: dict[str, dict[str, Any]] = {
    "server": {"hostname": "localhost", "data_dir": "data"},
    "mail": {"domain": "esam.localhost"},
}
