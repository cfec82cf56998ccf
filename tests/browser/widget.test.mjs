// Our widget and JS client in Chromium against the example server.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  launchBrowser,
  withServerPage,
  randomFile,
  repo,
  saveDocument,
  sha256File,
  sleep,
} from './harness.mjs';

const MiB = 1024 * 1024;
// Written each run (git-ignored); curated copies for the README are in screenshots/.
const screenshots = join(repo, 'tests/browser/out');
let browser;

before(async () => {
  browser = await launchBrowser();
  mkdirSync(screenshots, { recursive: true });
});
after(async () => {
  await browser?.close();
});

/** Opens the form with 1 MiB chunks (30 chunks for 30 MB: room to act mid-upload). */
async function openForm(page, server) {
  await page.goto(`${server.base}/`);
  await page.evaluate(() => {
    document.querySelector('[data-resumable-widget]').dataset.chunkSize = String(1024 * 1024);
  });
}

/** A network between the page and the endpoint: every request is delayed by
 *  `network.delay` ms, and fails at once while `network.down`. */
async function slowNetwork(page, server, delay) {
  const network = { delay, down: false, busy: null };
  await page.route(`${server.base}/resumable_upload/**`, async (route) => {
    if (network.down) {
      await route.abort('internetdisconnected');
      return;
    }
    if (network.busy) {
      await route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: network.busy }) });
      return;
    }
    await sleep(network.delay);
    await route.continue();
  });
  return network;
}

const progressOf = (page) => page.$eval('[data-rw-progress]', (p) => Number(p.value));
const stateOf = (page) => page.$eval('[data-resumable-widget]', (w) => w.dataset.state ?? '');

test('the widget uploads 30 MB through a network cut, resumes by itself, and the form saves it', async () => {
  await withServerPage(browser, [], async (server, page) => {
    const file = randomFile(server.root, 'big file.bin', 30 * MiB);
    await openForm(page, server);
    const network = await slowNetwork(page, server, 200);
    await page.fill('#title', 'Thirty megabytes');
    await page.setInputFiles('#id_file', file.path);

    await page.waitForFunction(
      () => Number(document.querySelector('[data-rw-progress]').value) >= 20,
    );
    await page.screenshot({ path: join(screenshots, 'widget-uploading.png') });
    // The network goes away for three seconds.
    network.down = true;
    await page.waitForFunction(() =>
      document.querySelector('[data-rw-status]').textContent.startsWith('Connection lost'),
    );
    const stalledAt = await progressOf(page);
    await sleep(3000);
    assert.ok((await progressOf(page)) <= stalledAt + 5, 'no progress while the network is down');
    network.down = false;
    network.delay = 10;

    // It carries on by itself.
    await page.waitForFunction(() => document.querySelector('[data-rw-token]').value !== '', null, {
      timeout: 60_000,
    });
    assert.equal(await stateOf(page), 'complete');
    assert.equal(await page.textContent('[data-rw-status]'), 'Uploaded');
    await page.screenshot({ path: join(screenshots, 'widget-uploaded.png') });

    await Promise.all([page.waitForURL(/\/documents\/\d+$/), page.click('#save')]);
    const stored = join(server.media, await page.textContent('#path'));
    assert.equal(sha256File(stored), file.sha256);
    assert.equal(await page.textContent('#title'), 'Thirty megabytes');
  });
});

test('after pause and a page reload, picking the same file sends only the missing chunks', async () => {
  await withServerPage(browser, [], async (server, page) => {
    const file = randomFile(server.root, 'resume.bin', 20 * MiB);
    await openForm(page, server);
    await slowNetwork(page, server, 60);
    const sentBefore = new Set();
    page.on('requestfinished', (request) => {
      if (request.method() === 'POST' && request.url().includes('/resumable_upload/')) {
        const body = request.postDataBuffer()?.toString('latin1') ?? '';
        const number = /name="resumableChunkNumber"\r\n\r\n(\d+)/.exec(body)?.[1];
        if (number) sentBefore.add(Number(number));
      }
    });
    await page.setInputFiles('#id_file', file.path);
    await page.waitForFunction(() => Number(document.querySelector('[data-rw-progress]').value) >= 40);
    await page.click('[data-rw-pause]');
    assert.equal(await stateOf(page), 'paused');
    await sleep(300);

    await page.reload();
    await openForm(page, server);
    const tested = new Map();
    const sentAfter = [];
    page.removeAllListeners('requestfinished');
    page.on('response', async (response) => {
      const request = response.request();
      if (!request.url().includes('/resumable_upload/')) return;
      if (request.method() === 'GET') {
        const number = Number(new URL(request.url()).searchParams.get('resumableChunkNumber'));
        tested.set(number, response.status());
      } else if (request.method() === 'POST') {
        const body = request.postDataBuffer()?.toString('latin1') ?? '';
        sentAfter.push(Number(/name="resumableChunkNumber"\r\n\r\n(\d+)/.exec(body)?.[1]));
      }
    });
    await page.setInputFiles('#id_file', file.path);
    await page.waitForFunction(() => document.querySelector('[data-rw-token]').value !== '', null, {
      timeout: 60_000,
    });
    const present = [...tested].filter(([, status]) => status === 200).map(([n]) => n);
    assert.ok(present.length >= 5, `chunks found stored after the reload: ${present}`);
    for (const n of sentAfter) {
      assert.notEqual(tested.get(n), 200, `chunk ${n} was stored, yet sent again`);
    }
    assert.ok(sentAfter.length < 20, `only the missing chunks were sent (${sentAfter.length} of 20)`);
    assert.ok(sentBefore.size > 0);

    const token = await page.inputValue('[data-rw-token]');
    await page.fill('#title', 'Resumed');
    await Promise.all([page.waitForURL(/\/documents\/\d+$/), page.click('#save')]);
    assert.ok(token.length > 0);
    const stored = join(server.media, await page.textContent('#path'));
    assert.equal(sha256File(stored), file.sha256);
  });
});

test("a server-side refusal (file over the endpoint's limit) shows its message in the widget", async () => {
  await withServerPage(browser, ['--max-file-size', '1000000'], async (server, page) => {
    const file = randomFile(server.root, 'too big.bin', 3 * MiB);
    await openForm(page, server);
    await page.setInputFiles('#id_file', file.path);
    await page.waitForSelector('[data-rw-errors] li');
    assert.equal(
      await page.textContent('[data-rw-errors] li'),
      'the file is larger than the limit of 1000000 bytes',
    );
    assert.equal(await stateOf(page), 'failed');
    assert.equal(await page.inputValue('[data-rw-token]'), '');
    await page.screenshot({ path: join(screenshots, 'widget-refused.png') });
  });
});

test("two widgets on one page upload at once, and every request carries the page's CSRF token", async () => {
  await withServerPage(browser, [], async (server, page) => {
    const first = randomFile(server.root, 'first.bin', 3 * MiB + 5);
    const second = randomFile(server.root, 'second.bin', 2 * MiB + 7);
    await openForm(page, server);
    await page.evaluate(() => {
      const meta = document.createElement('meta');
      meta.name = 'csrf-token';
      meta.content = 'csrf-123';
      document.head.appendChild(meta);
      const original = document.querySelector('[data-resumable-widget]');
      const copy = original.cloneNode(true);
      copy.id = 'id_other-widget';
      copy.querySelector('input[type=file]').id = 'id_other';
      copy.querySelector('[data-rw-token]').name = 'other';
      original.after(copy);
      window.ResumableWidget.init(copy);
    });
    const headers = [];
    page.on('request', (request) => {
      if (request.url().includes('/resumable_upload/')) {
        headers.push(request.headers()['x-csrf-token']);
      }
    });
    await page.setInputFiles('#id_file', first.path);
    await page.setInputFiles('#id_other', second.path);
    await page.waitForFunction(() =>
      [...document.querySelectorAll('[data-rw-token]')].every((input) => input.value !== ''),
    );
    assert.ok(headers.length >= 10, `${headers.length} requests`);
    assert.ok(headers.every((h) => h === 'csrf-123'), `headers: ${headers}`);
    const [a, b] = await page.$$eval('[data-rw-token]', (inputs) => inputs.map((i) => i.value));
    assert.notEqual(a, b);
    assert.equal(sha256File(await saveDocument(page, server, 'First', a)), first.sha256);
    assert.equal(sha256File(await saveDocument(page, server, 'Second', b)), second.sha256);
  });
});

test('a form shown again after an error keeps the finished upload: no second upload', async () => {
  await withServerPage(browser, [], async (server, page) => {
    const file = randomFile(server.root, 'kept.bin', 2 * MiB + 3);
    await openForm(page, server);
    await page.setInputFiles('#id_file', file.path);
    await page.waitForFunction(() => document.querySelector('[data-rw-token]').value !== '');
    // No title: the browser's own check is bypassed to reach the server's.
    await page.$eval('#title', (input) => input.removeAttribute('required'));
    const [response] = await Promise.all([page.waitForNavigation(), page.click('#save')]);
    assert.equal(response.status(), 422);
    assert.equal(await page.textContent('#title-error'), 'Please give the document a title.');
    assert.equal(await page.textContent('[data-rw-status]'), 'Uploaded');
    assert.equal(await page.textContent('[data-rw-name]'), 'kept.bin');
    let uploads = 0;
    page.on('request', (request) => {
      if (request.url().includes('/resumable_upload/')) uploads += 1;
    });
    await page.fill('#title', 'Kept');
    await Promise.all([page.waitForURL(/\/documents\/\d+$/), page.click('#save')]);
    assert.equal(uploads, 0, 'nothing uploaded again');
    assert.equal(sha256File(join(server.media, await page.textContent('#path'))), file.sha256);
  });
});

test('a server that has every chunk but is still putting the file together is asked again until it is complete', async () => {
  await withServerPage(browser, [], async (server, page) => {
    // The first three answers that say complete come back as "every chunk in, not complete
    // yet", as from a server still assembling the file on object storage.
    let held = 0;
    await page.route(`${server.base}/resumable_upload/**`, async (route) => {
      const response = await route.fetch();
      const text = await response.text();
      let status = null;
      try {
        status = JSON.parse(text);
      } catch {
        status = null;
      }
      if (status && status.complete && held < 3) {
        held += 1;
        status.complete = false;
        status.chunks_received = status.total_chunks;
        await route.fulfill({ response, body: JSON.stringify(status) });
        return;
      }
      await route.fulfill({ response, body: text });
    });
    const file = randomFile(server.root, 'assembling.bin', 3 * MiB + 11);
    await openForm(page, server);
    await page.setInputFiles('#id_file', file.path);
    await page.waitForFunction(() => document.querySelector('[data-rw-token]').value !== '', null, {
      timeout: 30000,
    });
    assert.equal(held, 3, 'three answers held back, then the fourth question got "complete"');
    assert.equal(await stateOf(page), 'complete');
    await page.fill('#title', 'Assembled');
    await Promise.all([page.waitForURL(/\/documents\/\d+$/), page.click('#save')]);
    assert.equal(sha256File(join(server.media, await page.textContent('#path'))), file.sha256);
  });
});

test('a file dropped on the drop area uploads like a picked one', async () => {
  await withServerPage(browser, [], async (server, page) => {
    await openForm(page, server);
    const expected = await page.evaluate(async () => {
      const bytes = new Uint8Array(1536 * 1024);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 251;
      const digest = await crypto.subtle.digest('SHA-256', bytes);
      const transfer = new DataTransfer();
      transfer.items.add(new File([bytes], 'dropped.bin'));
      const drop = document.querySelector('[data-rw-drop]');
      drop.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
      drop.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
      return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
    });
    await page.waitForFunction(() => document.querySelector('[data-rw-token]').value !== '');
    assert.equal(await page.textContent('[data-rw-name]'), 'dropped.bin');
    const token = await page.inputValue('[data-rw-token]');
    assert.equal(sha256File(await saveDocument(page, server, 'Dropped', token)), expected);
  });
});

test('a busy server (503 with a message) is shown and retried until it recovers', async () => {
  await withServerPage(browser, [], async (server, page) => {
    const file = randomFile(server.root, 'busy.bin', 6 * MiB);
    await openForm(page, server);
    const network = await slowNetwork(page, server, 100);
    await page.setInputFiles('#id_file', file.path);
    await page.waitForFunction(() => Number(document.querySelector('[data-rw-progress]').value) >= 10);
    network.busy = 'the disk is full';
    await page.waitForFunction(() =>
      document.querySelector('[data-rw-status]').textContent.includes('Server busy (the disk is full)'),
    );
    assert.equal(await stateOf(page), 'retrying');
    await sleep(1500);
    network.busy = null;
    network.delay = 0;
    await page.waitForFunction(() => document.querySelector('[data-rw-token]').value !== '', null, {
      timeout: 60_000,
    });
    const token = await page.inputValue('[data-rw-token]');
    assert.equal(sha256File(await saveDocument(page, server, 'Busy', token)), file.sha256);
  });
});

test('pause and resume buttons carry on, and Remove clears a finished upload', async () => {
  await withServerPage(browser, [], async (server, page) => {
    const file = randomFile(server.root, 'buttons.bin', 8 * MiB);
    await openForm(page, server);
    await slowNetwork(page, server, 80);
    await page.setInputFiles('#id_file', file.path);
    await page.waitForFunction(() => Number(document.querySelector('[data-rw-progress]').value) >= 25);
    await page.click('[data-rw-pause]');
    assert.equal(await stateOf(page), 'paused');
    assert.ok(await page.isHidden('[data-rw-pause]'));
    const pausedAt = await progressOf(page);
    await sleep(500);
    assert.equal(await progressOf(page), pausedAt, 'nothing moves while paused');
    await page.click('[data-rw-resume]');
    await page.waitForFunction(() => document.querySelector('[data-rw-token]').value !== '');
    assert.equal(await page.textContent('[data-rw-cancel]'), 'Remove');
    await page.click('[data-rw-cancel]');
    assert.equal(await page.inputValue('[data-rw-token]'), '');
    assert.ok(await page.$eval('#id_file', (input) => input.required), 'the field is required again');
    assert.ok(await page.isHidden('[data-rw-file]'));
  });
});

test('with --require-login: log in, upload through the widget with the CSRF header, save, log out', async () => {
  const args = ['--require-login', '--user', 'alice:wonderland', '--user', 'bob:builder'];
  await withServerPage(browser, args, async (server, page) => {
    await page.goto(`${server.base}/`);
    assert.match(page.url(), /\/login\?next=%2F$/, 'pages send a stranger to the login form');
    await page.fill('#username', 'alice');
    await page.fill('#password', 'wrong');
    await page.click('#log-in');
    assert.equal(await page.textContent('#login-error'), 'Wrong user name or password.');
    await page.fill('#username', 'alice');
    await page.fill('#password', 'wonderland');
    await Promise.all([page.waitForURL(`${server.base}/`), page.click('#log-in')]);
    assert.equal(await page.textContent('#user'), 'alice');

    const csrf = await page.getAttribute('meta[name="csrf-token"]', 'content');
    const headers = [];
    page.on('request', (request) => {
      if (request.url().includes('/resumable_upload')) headers.push(request.headers()['x-csrf-token']);
    });
    const file = randomFile(server.root, 'private.bin', 3 * MiB + 5);
    await openForm(page, server);
    await page.setInputFiles('#id_file', file.path);
    await page.waitForFunction(() => document.querySelector('[data-rw-token]').value !== '');
    await page.fill('#title', 'Private');
    await Promise.all([page.waitForURL(/\/documents\/\d+$/), page.click('#save')]);
    assert.equal(sha256File(join(server.media, await page.textContent('#path'))), file.sha256);
    assert.ok(headers.length >= 4, `${headers.length} upload requests`);
    assert.ok(headers.every((h) => h === csrf), 'every upload request carried the token');
    const documentUrl = page.url();
    const download = await page.getAttribute('#file', 'href');
    assert.equal((await page.request.get(`${server.base}${download}`)).status(), 200);

    // Bob, in another browser context, sees neither the document nor the file.
    const bob = await browser.newContext();
    try {
      const bobPage = await bob.newPage();
      await bobPage.goto(`${server.base}/login`);
      await bobPage.fill('#username', 'bob');
      await bobPage.fill('#password', 'builder');
      await Promise.all([bobPage.waitForURL(`${server.base}/`), bobPage.click('#log-in')]);
      assert.equal(await bobPage.$$eval('#documents li', (items) => items.length), 0);
      assert.equal((await bobPage.goto(documentUrl)).status(), 404);
      assert.equal((await bobPage.request.get(`${server.base}${download}`)).status(), 404);
    } finally {
      await bob.close();
    }

    await page.goto(`${server.base}/`);
    await Promise.all([page.waitForURL(/\/login$/), page.click('#log-out')]);
    assert.equal((await page.request.get(`${server.base}${download}`)).status(), 401);
  });
});
