"""`esam dns`: the records a domain needs, in zone-file syntax and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esam_mail import app, config
from esam_mail.cli import main
from esam_mail.services.mailflow.dkim import dns_record
from esam_mail.services.ops import dnsrecords
from tests.conftest import write_config


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    path = write_config(tmp_path, public={"mx_hosts": ["mx1.esam.test", "mx2.esam.test"],
                                          "imap_host": "imap.esam.test", "smtp_host": "smtp.esam.test",
                                          "dmarc_policy": "reject", "mta_sts_mode": "enforce"},
                        mail={"domain": "esam.test", "extra_domains": ["esam-alias.test"]})
    c = config.load(path)
    app.init(c)  # makes the DKIM keys
    return c


def by(data: dict, name: str, rtype: str) -> list[dnsrecords.Record]:
    return [r for r in data["records"] if r.name == name and r.type == rtype]


def test_records_for_the_main_domain(cfg: config.Config) -> None:
    data = dnsrecords.records(cfg)
    assert [r.value for r in by(data, "esam.test", "MX")] == ["10 mx1.esam.test.", "20 mx2.esam.test."]
    assert [r.value for r in by(data, "esam.test", "TXT")] == ["v=spf1 mx -all"]
    (dmarc,) = by(data, "_dmarc.esam.test", "TXT")
    assert dmarc.value.startswith("v=DMARC1; p=reject;") and "rua=mailto:postmaster@esam.test" in dmarc.value
    srv = {r.name.split(".")[0]: r.value for r in data["records"] if r.type == "SRV"
           and r.name.endswith(".esam.test") and not r.name.startswith("_autodiscover")
           and "alias" not in r.name}
    assert srv == {"_submissions": "0 1 465 smtp.esam.test.", "_submission": "10 1 587 smtp.esam.test.",
                   "_imaps": "0 1 993 imap.esam.test.", "_imap": "10 1 143 imap.esam.test."}
    (sts,) = by(data, "_mta-sts.esam.test", "TXT")
    assert sts.value == f"v=STSv1; id={dnsrecords.mta_sts_id(cfg)}"
    (rpt,) = by(data, "_smtp._tls.esam.test", "TXT")
    assert rpt.value == "v=TLSRPTv1; rua=mailto:postmaster@esam.test"
    assert data["mta_sts_policy"] == ("version: STSv1\r\nmode: enforce\r\nmx: mx1.esam.test\r\n"
                                      "mx: mx2.esam.test\r\nmax_age: 604800\r\n")
    # extra domains get their own MX/SPF/DMARC/SRV/MTA-STS, but DKIM only signs for mail.domain
    assert by(data, "esam-alias.test", "MX") and by(data, "_dmarc.esam-alias.test", "TXT")
    assert not [r for r in data["records"] if "_domainkey.esam-alias" in r.name]


def test_dkim_records_come_from_the_key_files_and_are_chunked(cfg: config.Config) -> None:
    data = dnsrecords.records(cfg)
    dkim = {r.name: r for r in data["records"] if "._domainkey." in r.name}
    assert set(dkim) == {"esam-rsa._domainkey.esam.test", "esam-ed._domainkey.esam.test"}
    for selector, algorithm, path in dnsrecords.dkim_keys(cfg):
        assert path is not None
        rec = dkim[f"{selector}._domainkey.esam.test"]
        assert "".join(rec.chunks) == rec.value == dns_record(path.read_bytes(), algorithm)
        assert all(len(c) <= 255 for c in rec.chunks)
    assert len(dkim["esam-rsa._domainkey.esam.test"].chunks) > 1
    zone = dkim["esam-rsa._domainkey.esam.test"].zone_line()
    assert zone.count('"') == 2 * len(dkim["esam-rsa._domainkey.esam.test"].chunks) and "( " in zone


def test_mta_sts_id_changes_with_the_policy(cfg: config.Config, tmp_path: Path) -> None:
    other = config.load(write_config(tmp_path, public={"mx_hosts": ["mx1.esam.test"]}))
    assert dnsrecords.mta_sts_id(cfg) != dnsrecords.mta_sts_id(other)
    assert dnsrecords.mta_sts_id(cfg).isalnum() and len(dnsrecords.mta_sts_id(cfg)) <= 32


def test_cli_prints_zone_file_and_json(cfg: config.Config, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", cfg.source, "dns"]) == 0
    zone = capsys.readouterr().out
    assert "esam.test.\t3600\tIN\tMX\t10 mx1.esam.test." in zone
    assert '_dmarc.esam.test.\t3600\tIN\tTXT\t"v=DMARC1; p=reject;' in zone
    assert "_imaps._tcp.esam.test.\t3600\tIN\tSRV\t0 1 993 imap.esam.test." in zone
    assert ";   mode: enforce" in zone
    assert main(["-c", cfg.source, "dns", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    types = {(r["name"], r["type"]) for r in data["records"]}
    assert ("_submission._tcp.esam.test", "SRV") in types and ("esam-ed._domainkey.esam.test", "TXT") in types
    assert data["dkim_missing"] == []


def test_missing_dkim_key_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = config.load(write_config(tmp_path))
    data = dnsrecords.records(c)
    assert sorted(data["dkim_missing"]) == ["esam-ed", "esam-rsa"]
    assert "no key file yet" in dnsrecords.zone_text(data)
