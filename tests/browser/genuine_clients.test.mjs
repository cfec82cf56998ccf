// The genuine resumable.js 1.1.0 and flow.js 2.14.1 from npm, on a plain page, against the
// example server's endpoint; the token they end with saves a document whose file is
// byte-identical.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createRequire } from 'node:module';
import { launchBrowser, randomFile, saveDocument, servePage, sha256File, withServerPage } from './harness.mjs';

const require = createRequire(import.meta.url);
const MiB = 1024 * 1024;
let browser;

before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** A page that uploads the picked file with `library` configured by `setup` (a script
 *  that defines `client`), and records the outcome in window.outcome. */
function clientPage(script, setup) {
  return `<!doctype html><html><head><meta charset="utf-8"><script src="/__test/${script}"></script></head>
<body><input type="file" id="pick">
<script>
  window.requests = [];
  ${setup}
  client.on('fileSuccess', function (file, message) { window.outcome = { ok: true, message: message }; });
  client.on('fileError', function (file, message) { window.outcome = { ok: false, message: message }; });
  client.on('fileAdded', function () { setTimeout(function () { client.upload(); }, 0); });
  client.assignBrowse(document.getElementById('pick'));
</script></body></html>`;
}

async function uploadWith(page, server, script, file, setup) {
  const scripts = {
    'resumable.js': require.resolve('resumablejs/resumable.js'),
    'flow.js': require.resolve('@flowjs/flow.js/dist/flow.js'),
  };
  const seen = { tests: [], uploads: [] };
  page.on('response', (response) => {
    const request = response.request();
    if (!request.url().includes('/resumable_upload/')) return;
    (request.method() === 'GET' ? seen.tests : seen.uploads).push(response.status());
  });
  await servePage(page, server.base, clientPage(script, setup), scripts);
  await page.setInputFiles('#pick', file.path);
  await page.waitForFunction(() => window.outcome !== undefined, null, { timeout: 60_000 });
  const outcome = await page.evaluate(() => window.outcome);
  assert.ok(outcome.ok, `the client reported an error: ${outcome.message}`);
  const status = JSON.parse(outcome.message);
  assert.equal(status.complete, true);
  return { status, seen };
}

test('the genuine resumable.js 1.1.0 uploads through our endpoint (test GETs, 3 in flight)', async () => {
  await withServerPage(browser, [], async (server, page) => {
    const file = randomFile(server.root, 'résumé – final.bin', 5 * MiB + 12345);
    const { status, seen } = await uploadWith(
      page,
      server,
      'resumable.js',
      file,
      `var client = new Resumable({ target: '/resumable_upload/', chunkSize: 1024 * 1024,
         simultaneousUploads: 3, testChunks: true, query: {} });`,
    );
    assert.equal(status.total_chunks, 5);
    assert.ok(seen.tests.length >= 5 && seen.tests.every((s) => s === 204 || s === 200), `${seen.tests}`);
    assert.ok(seen.uploads.every((s) => s === 200), `${seen.uploads}`);
    const stored = await saveDocument(page, server, 'From resumable.js', status.token);
    assert.equal(sha256File(stored), file.sha256);
  });
});

test('the genuine resumable.js in octet mode, with forceChunkSize', async () => {
  await withServerPage(browser, [], async (server, page) => {
    const file = randomFile(server.root, 'octet.bin', 3 * MiB + 1);
    const { status } = await uploadWith(
      page,
      server,
      'resumable.js',
      file,
      `var client = new Resumable({ target: '/resumable_upload/', chunkSize: 1024 * 1024,
         method: 'octet', forceChunkSize: true, testChunks: true });`,
    );
    assert.equal(status.total_chunks, 4);
    const stored = await saveDocument(page, server, 'Octet', status.token);
    assert.equal(sha256File(stored), file.sha256);
  });
});

test('the genuine flow.js 2.14.1 uploads through our endpoint, test requests included', async () => {
  await withServerPage(browser, [], async (server, page) => {
    const file = randomFile(server.root, 'flow file.bin', 4 * MiB + 777);
    const { status, seen } = await uploadWith(
      page,
      server,
      'flow.js',
      file,
      `var client = new Flow({ target: '/resumable_upload/', chunkSize: 1024 * 1024,
         simultaneousUploads: 3, testChunks: true });`,
    );
    assert.equal(status.total_chunks, 4);
    assert.ok(seen.tests.length >= 4, `flow.js sent its test requests: ${seen.tests}`);
    assert.ok(seen.tests.every((s) => s === 204 || s === 200), `never 404 to flow.js: ${seen.tests}`);
    const stored = await saveDocument(page, server, 'From flow.js', status.token);
    assert.equal(sha256File(stored), file.sha256);
  });
});
