'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $('apply-form');
  const NESTED = ['id_document', 'residence_address'];
  let prepared = null;
  let consentLanguage = null;  // the agreement edition the prepared document covers  // JSON text of the application whose canonical bytes are shown

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
    consentLanguage = r.data.consent ? r.data.consent.language : null;
    $('canonical').textContent = r.data.canonical;
    $('canonical-b64').value = r.data.base64;
    $('canonical').setAttribute('data-sha256', r.data.sha256);
    $('canonical').setAttribute('data-language', consentLanguage || '');
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
      language: consentLanguage,
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
