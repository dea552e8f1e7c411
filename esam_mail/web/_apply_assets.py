"""The /apply page and its script (no external assets: no CDN, no fonts, no frameworks).

Kept apart from :mod:`esam_mail.web.apply` so the route code stays short.  The
page is rendered with the agreement (HTML-escaped) filled in; the script is
served from ``/apply.js`` so that the Content-Security-Policy can forbid inline
scripts.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="ru">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Заявление на электронный абонентский ящик / Application for a mailbox</title>
<style>
 body {{ font-family: sans-serif; max-width: 52rem; margin: 1rem auto; padding: 0 1rem; line-height: 1.4; }}
 fieldset {{ margin: 1rem 0; }}
 label {{ display: block; margin: .4rem 0; }}
 label span {{ display: inline-block; min-width: 14rem; }}
 input[type=text], input[type=password], input[type=date], select {{ width: 20rem; }}
 textarea {{ width: 100%; font-family: monospace; }}
 #agreement {{ white-space: pre-wrap; max-height: 14rem; overflow: auto; border: 1px solid #888;
   padding: .5rem; background: #f8f8f8; }}
 #canonical {{ white-space: pre-wrap; word-break: break-all; background: #f0f0f0; padding: .5rem; }}
 .error {{ color: #a00; }}
 .ok {{ color: #060; font-weight: bold; }}
</style>
</head>
<body>
<h1>Заявление физического лица на электронный абонентский ящик</h1>
<p>Application of an individual for an electronic subscriber mailbox on <b>{domain}</b>, signed
with your electronic digital signature (EDS).  Fields marked * are required.</p>

<form id="apply-form" autocomplete="off" novalidate>
<fieldset><legend>Applicant</legend>
 <label><span>Surname *</span><input type="text" name="surname" id="surname" required></label>
 <label><span>Given name *</span><input type="text" name="given_name" id="given_name" required></label>
 <label><span>Patronymic</span><input type="text" name="patronymic" id="patronymic"></label>
 <label><span>IIN * (12 digits)</span><input type="text" name="iin" id="iin" inputmode="numeric"
   maxlength="12" required></label>
 <label><span>Birth date</span><input type="text" name="birth_date" id="birth_date"
   placeholder="YYYY-MM-DD"></label>
</fieldset>
<fieldset><legend>Identity document</legend>
 <label><span>Type *</span><select name="id_document.type" id="id_document.type">
  <option value="id_card">ID card</option><option value="passport">passport</option>
  <option value="residence_permit">residence permit</option>
  <option value="stateless_certificate">stateless person certificate</option></select></label>
 <label><span>Number *</span><input type="text" name="id_document.number" id="id_document.number"></label>
 <label><span>Issued by *</span><input type="text" name="id_document.issuer" id="id_document.issuer"></label>
 <label><span>Issue date *</span><input type="text" name="id_document.issue_date"
   id="id_document.issue_date" placeholder="YYYY-MM-DD"></label>
 <label><span>Expiry date</span><input type="text" name="id_document.expiry_date"
   id="id_document.expiry_date" placeholder="YYYY-MM-DD"></label>
</fieldset>
<fieldset><legend>Residence address</legend>
 <label><span>Region</span><input type="text" name="residence_address.region"
   id="residence_address.region"></label>
 <label><span>Locality *</span><input type="text" name="residence_address.locality"
   id="residence_address.locality"></label>
 <label><span>Street *</span><input type="text" name="residence_address.street"
   id="residence_address.street"></label>
 <label><span>House *</span><input type="text" name="residence_address.house"
   id="residence_address.house"></label>
 <label><span>Apartment</span><input type="text" name="residence_address.apartment"
   id="residence_address.apartment"></label>
 <label><span>Postcode *</span><input type="text" name="residence_address.postcode"
   id="residence_address.postcode"></label>
</fieldset>
<fieldset><legend>Contacts and account</legend>
 <label><span>Home phone</span><input type="text" name="home_phone" id="home_phone"></label>
 <label><span>Mobile phone *</span><input type="text" name="mobile_phone" id="mobile_phone"></label>
 <label><span>User name * (address: name@{domain})</span><input type="text" name="username"
   id="username"></label>
 <label><span>Password * (8+ characters)</span><input type="password" id="password"
   autocomplete="new-password"></label>
 <label><span>Repeat the password *</span><input type="password" id="password2"
   autocomplete="new-password"></label>
</fieldset>
<fieldset><legend>User agreement, version <span id="agreement-version">{version}</span></legend>
 <div id="agreement">{agreement}</div>
 <p><small>SHA-256 of the text: <code id="agreement-sha256">{sha256}</code></small></p>
 <label><input type="checkbox" id="accept" data-version="{version}"> I have read and accept the user
   agreement (version {version}) *</label>
</fieldset>
<fieldset><legend>Electronic signature</legend>
 <p>1. <button type="button" id="prepare">Prepare the document to sign</button>
   The server returns the exact bytes you sign (the canonical form of this application):</p>
 <div id="canonical"></div>
 <input type="hidden" id="canonical-b64" value="">
 <p>2. <button type="button" id="ncalayer">Sign with NCALayer</button>
   (NCALayer must be running on this computer; choose your <b>signing</b> key, not the AUTH one),
   or paste a Base64 detached CMS over the bytes above made by any other tool:</p>
 <textarea id="cms" rows="8" placeholder="MII..."></textarea>
 <p>3. <button type="submit" id="submit">Submit the application</button></p>
</fieldset>
</form>
<div id="errors" class="error" role="alert"></div>
<div id="result" class="ok" role="status"></div>
<!--
  NCALayer (https://pki.gov.kz/ncalayer/) listens on wss://127.0.0.1:13579.  The page sends
    {{"module": "kz.gov.pki.knca.basics", "method": "sign",
     "args": {{"allowedStorages": null, "format": "cms", "data": <Base64 of the canonical bytes>,
              "signingParams": {{"decode": true, "encapsulate": false, "digested": false,
                                "tsaProfile": {{}}}},
              "signerParams": {{"extKeyUsageOids": ["1.3.6.1.5.5.7.3.4"], "chain": []}},
              "locale": "ru"}}}}
  and puts the returned Base64 CMS into the text area.  Older NCALayer versions answer to
    {{"module": "kz.gov.pki.knca.commonUtils", "method": "createCAdESFromBase64",
     "args": ["PKCS12", "SIGNATURE", <Base64>, false]}}
  which the page tries when the first call is refused.
-->
<script src="/apply.js"></script>
</body>
</html>
"""

SCRIPT = r"""'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $('apply-form');
  const NESTED = ['id_document', 'residence_address'];
  let prepared = null;  // JSON text of the application whose canonical bytes are shown

  function application() {
    const app = {};
    NESTED.forEach((k) => { app[k] = {}; });
    form.querySelectorAll('input[name], select[name]').forEach((el) => {
      const value = el.value.trim();
      if (!value) { return; }
      const parts = el.name.split('.');
      if (parts.length === 2) { app[parts[0]][parts[1]] = value; } else { app[el.name] = value; }
    });
    return app;
  }

  function showErrors(list) {
    const box = $('errors');
    box.textContent = '';
    list.forEach((text) => {
      const p = document.createElement('p');
      p.textContent = text;
      box.appendChild(p);
    });
  }

  function problems(data) {
    if (data && Array.isArray(data.problems)) {
      return data.problems.map((p) => p.field + ': ' + p.message);
    }
    if (data && data.message) { return [data.error + ': ' + data.message]; }
    return ['the request failed'];
  }

  async function post(url, body) {
    const resp = await fetch(url, {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(body),
    });
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return {status: resp.status, data: data};
  }

  async function prepare() {
    showErrors([]);
    $('result').textContent = '';
    const app = application();
    const r = await post('/api/v1/applications/canonical', {kind: 'individual', application: app});
    if (r.status !== 200) {
      prepared = null;
      $('canonical').textContent = '';
      $('canonical-b64').value = '';
      showErrors(problems(r.data));
      return;
    }
    prepared = JSON.stringify(app);
    $('canonical').textContent = r.data.canonical;
    $('canonical-b64').value = r.data.base64;
    $('canonical').setAttribute('data-sha256', r.data.sha256);
  }

  function ncalayer(request) {
    return new Promise((resolve, reject) => {
      let ws;
      try { ws = new WebSocket('wss://127.0.0.1:13579/'); } catch (e) { reject(e); return; }
      ws.onerror = () => reject(new Error('NCALayer is not running on this computer'));
      ws.onopen = () => ws.send(JSON.stringify(request));
      ws.onmessage = (msg) => {
        let res;
        try { res = JSON.parse(msg.data); } catch (e) { return; }
        if (res.result && res.result.version) { return; }  // the greeting
        ws.close();
        if (res.status === true && res.body && res.body.result) {
          const out = res.body.result;
          resolve(Array.isArray(out) ? out[0] : out);
        } else if (res.code === '200' && res.responseObject) {
          resolve(res.responseObject);
        } else {
          reject(new Error(res.message || res.details || ('NCALayer refused (code ' + res.code + ')')));
        }
      };
    });
  }

  async function signWithNcaLayer() {
    showErrors([]);
    if (!$('canonical-b64').value) { await prepare(); }
    const data = $('canonical-b64').value;
    if (!data) { return; }
    try {
      $('cms').value = await ncalayer({
        module: 'kz.gov.pki.knca.basics', method: 'sign',
        args: {allowedStorages: null, format: 'cms', data: data,
               signingParams: {decode: true, encapsulate: false, digested: false, tsaProfile: {}},
               signerParams: {extKeyUsageOids: ['1.3.6.1.5.5.7.3.4'], chain: []}, locale: 'ru'},
      });
    } catch (first) {
      try {
        $('cms').value = await ncalayer({
          module: 'kz.gov.pki.knca.commonUtils', method: 'createCAdESFromBase64',
          args: ['PKCS12', 'SIGNATURE', data, false],
        });
      } catch (second) {
        showErrors([String(second.message || second)]);
      }
    }
  }

  async function submit(ev) {
    ev.preventDefault();
    showErrors([]);
    $('result').textContent = '';
    const app = application();
    const errs = [];
    if (prepared === null || JSON.stringify(app) !== prepared) {
      errs.push('signature: the form changed after the document was prepared: prepare and sign it again');
    }
    if ($('password').value !== $('password2').value) { errs.push('password: the two passwords differ'); }
    if (!$('cms').value.trim()) { errs.push('signature: sign the document (step 2) or paste the CMS'); }
    if (errs.length) { showErrors(errs); return; }
    const accept = $('accept');
    const r = await post('/api/v1/applications', {
      kind: 'individual',
      application: app,
      accept_agreement: accept.checked ? accept.getAttribute('data-version') : null,
      password: $('password').value,
      signature: $('cms').value.trim(),
    });
    if (r.status === 201) {
      const box = $('result');
      box.setAttribute('data-address', r.data.address);
      box.setAttribute('data-status', r.data.status);
      box.textContent = 'Your mailbox ' + r.data.address + ' is registered (' + r.data.status + ').';
      return;
    }
    showErrors(problems(r.data));
  }

  $('prepare').addEventListener('click', prepare);
  $('ncalayer').addEventListener('click', signWithNcaLayer);
  form.addEventListener('submit', submit);
  form.setAttribute('data-ready', '1');
})();
"""
