'use strict';
// Signs the challenge text of /account/confirm with NCALayer (wss://127.0.0.1:13579) and puts
// the Base64 detached CMS into the form; the form itself is posted normally (with its CSRF token).
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $('confirm-form');
  if (!form) { return; }
  function b64utf8(text) {
    const bytes = new TextEncoder().encode(text);
    let bin = '';
    bytes.forEach((b) => { bin += String.fromCharCode(b); });
    return btoa(bin);
  }
  function ncalayer(request) {
    return new Promise((resolve, reject) => {
      let ws;
      try { ws = new WebSocket('wss://127.0.0.1:13579/'); } catch (e) { reject(e); return; }
      ws.onerror = () => reject(new Error('NCALayer'));
      ws.onopen = () => ws.send(JSON.stringify(request));
      ws.onmessage = (msg) => {
        let res;
        try { res = JSON.parse(msg.data); } catch (e) { return; }
        if (res.result && res.result.version) { return; }
        ws.close();
        if (res.status === true && res.body && res.body.result) {
          const out = res.body.result;
          resolve(Array.isArray(out) ? out[0] : out);
        } else if (res.code === '200' && res.responseObject) {
          resolve(res.responseObject);
        } else {
          reject(new Error(res.message || res.details || 'NCALayer'));
        }
      };
    });
  }
  $('ncalayer').addEventListener('click', async () => {
    $('ncalayer-error').textContent = '';
    const data = b64utf8($('challenge').value);
    try {
      $('cms').value = await ncalayer({
        module: 'kz.gov.pki.knca.basics', method: 'sign',
        args: {allowedStorages: null, format: 'cms', data: data,
               signingParams: {decode: true, encapsulate: false, digested: false, tsaProfile: {}},
               signerParams: {extKeyUsageOids: ['1.3.6.1.5.5.7.3.4'], chain: []},
               locale: form.getAttribute('data-lang') || 'kk'},
      });
    } catch (e) {
      const box = $('ncalayer-error');
      box.textContent = box.getAttribute('data-message');
    }
  });
  form.setAttribute('data-ready', '1');
})();
