'use strict';
// The /apply page: builds the application of the chosen kind, asks the server for the exact
// bytes to sign, signs them with NCALayer (or takes a pasted Base64 CMS) and submits.  Every
// problem is shown under its own field, in the page's language (the server sends `text`).
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $('apply-form');
  const msg = (name) => form.getAttribute('data-msg-' + name) || '';
  let prepared = null;  // JSON text of the application whose canonical bytes are shown
  let consentLanguage = null;  // the agreement edition the prepared document covers

  function kind() { return form.querySelector('input[name=kind]:checked').value; }

  function showKind() {
    const k = kind();
    document.querySelectorAll('[data-kind]').forEach((el) => {
      el.classList.toggle('hidden', el.getAttribute('data-kind') !== k);
    });
  }

  function fields() {
    // inputs of the chosen kind plus the common ones (not inside another kind's block)
    const k = kind();
    return Array.from(form.querySelectorAll('input[name], select[name]')).filter((el) => {
      if (el.name === 'kind') { return false; }
      const block = el.closest('[data-kind]');
      return !block || block.getAttribute('data-kind') === k;
    });
  }

  function application() {
    const app = {};
    fields().forEach((el) => {
      const value = el.value.trim();
      if (!value) { return; }
      const parts = el.name.split('.');
      let node = app;
      parts.slice(0, -1).forEach((p) => { node[p] = node[p] || {}; node = node[p]; });
      node[parts[parts.length - 1]] = value;
    });
    if (kind() === 'individual') {
      app.id_document = app.id_document || {};
      app.residence_address = app.residence_address || {};
    }
    return app;
  }

  function clearErrors() {
    form.querySelectorAll('.field-error').forEach((el) => { el.textContent = ''; });
    form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
    $('errors').textContent = '';
  }

  function showProblem(field, text) {
    const slot = $(field + '-error');
    if (slot) {
      slot.textContent = slot.textContent ? slot.textContent + ' ' + text : text;
      const input = $(field);
      if (input) { input.setAttribute('aria-invalid', 'true'); }
      return slot;
    }
    const p = document.createElement('p');
    p.textContent = text;
    $('errors').appendChild(p);
    return p;
  }

  function showErrors(data) {
    let first = null;
    if (data && Array.isArray(data.problems)) {
      data.problems.forEach((p) => {
        const el = showProblem(p.field, p.text || p.message);
        first = first || el;
      });
    } else if (data && (data.text || data.message)) {
      first = showProblem('signature', data.text || data.message);
    } else {
      first = showProblem('', msg('failed'));
    }
    if (first && first.scrollIntoView) { first.scrollIntoView({block: 'center'}); }
  }

  async function post(url, body) {
    const resp = await fetch(url, {
      method: 'POST', credentials: 'same-origin',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(body),
    });
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return {status: resp.status, data: data};
  }

  async function prepare() {
    clearErrors();
    $('result').textContent = '';
    const app = application();
    const shown = $('agreement').getAttribute('lang');  // the edition on this page is what is signed
    const r = await post('/api/v1/applications/canonical', {kind: kind(), application: app, language: shown});
    if (r.status !== 200) {
      prepared = null;
      $('canonical').textContent = '';
      $('canonical-b64').value = '';
      showErrors(r.data);
      return;
    }
    prepared = kind() + JSON.stringify(app);
    consentLanguage = r.data.consent ? r.data.consent.language : shown;
    $('canonical').setAttribute('data-language', consentLanguage);
    $('canonical').textContent = r.data.canonical;
    $('canonical-b64').value = r.data.base64;
    $('canonical').setAttribute('data-sha256', r.data.sha256);
  }

  function ncalayer(request) {
    return new Promise((resolve, reject) => {
      let ws;
      try { ws = new WebSocket('wss://127.0.0.1:13579/'); } catch (e) { reject(e); return; }
      ws.onerror = () => reject(new Error(msg('ncalayer')));
      ws.onopen = () => ws.send(JSON.stringify(request));
      ws.onmessage = (m) => {
        let res;
        try { res = JSON.parse(m.data); } catch (e) { return; }
        if (res.result && res.result.version) { return; }  // the greeting
        ws.close();
        if (res.status === true && res.body && res.body.result) {
          const out = res.body.result;
          resolve(Array.isArray(out) ? out[0] : out);
        } else if (res.code === '200' && res.responseObject) {
          resolve(res.responseObject);
        } else {
          reject(new Error(res.message || res.details || msg('ncalayer')));
        }
      };
    });
  }

  async function signWithNcaLayer() {
    clearErrors();
    if (!$('canonical-b64').value) { await prepare(); }
    const data = $('canonical-b64').value;
    if (!data) { return; }
    try {
      $('cms').value = await ncalayer({
        module: 'kz.gov.pki.knca.basics', method: 'sign',
        args: {allowedStorages: null, format: 'cms', data: data,
               signingParams: {decode: true, encapsulate: false, digested: false, tsaProfile: {}},
               signerParams: {extKeyUsageOids: ['1.3.6.1.5.5.7.3.4'], chain: []},
               locale: form.getAttribute('data-lang') || 'kk'},
      });
    } catch (first) {
      try {
        $('cms').value = await ncalayer({
          module: 'kz.gov.pki.knca.commonUtils', method: 'createCAdESFromBase64',
          args: ['PKCS12', 'SIGNATURE', data, false],
        });
      } catch (second) {
        showProblem('signature', msg('ncalayer'));
      }
    }
  }

  async function submit(ev) {
    ev.preventDefault();
    clearErrors();
    $('result').textContent = '';
    const app = application();
    let bad = false;
    if (prepared === null) {
      showProblem('signature', msg('prepare')); bad = true;
    } else if (kind() + JSON.stringify(app) !== prepared) {
      showProblem('signature', msg('changed')); bad = true;
    }
    if ($('password').value !== $('password2').value) { showProblem('password2', msg('differ')); bad = true; }
    if (!bad && !$('cms').value.trim()) { showProblem('signature', msg('sign')); bad = true; }
    if (bad) { return; }
    const accept = $('accept');
    const r = await post('/api/v1/applications', {
      kind: kind(),
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
      box.textContent = msg('done').replace('{address}', r.data.address);
      const a = document.createElement('a');
      a.href = '/account/login';
      a.id = 'to-account';
      a.textContent = ' \u2192 /account';
      box.appendChild(a);
      return;
    }
    showErrors(r.data);
  }

  form.querySelectorAll('input[name=kind]').forEach((el) => el.addEventListener('change', () => {
    showKind(); clearErrors(); prepared = null;
  }));
  $('prepare').addEventListener('click', prepare);
  $('ncalayer').addEventListener('click', signWithNcaLayer);
  form.addEventListener('submit', submit);
  showKind();
  form.setAttribute('data-ready', '1');
})();
