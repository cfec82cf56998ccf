// Shared parts of the browser tests: the example server as a child process, Debian's
// Chromium through playwright-core, test files and hashes.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, '../..');

/** The example binary, built by `cargo build --examples` (tests/run.sh does it first). */
const serverBinary = process.env.UPLOAD_SERVER ?? join(repo, 'target/debug/examples/upload_server');

/** Starts the example server on a free port with its own media root; resolves when it
 *  prints its URL. */
export async function startServer(extraArgs = []) {
  const root = mkdtempSync(join(tmpdir(), 'resumable-browser-'));
  const media = join(root, 'media');
  // The example's own default database (an SQLite file beside the media root).
  const env = { ...process.env };
  delete env.DATABASE_URL;
  const child = spawn(serverBinary, ['--bind', '127.0.0.1:0', '--media-root', media, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env,
  });
  const lines = createInterface({ input: child.stdout });
  const endpoint = await new Promise((resolvePromise, reject) => {
    child.once('exit', (code) => reject(new Error(`upload_server exited (${code}) before listening`)));
    lines.once('line', (line) => {
      const match = /^listening on (http:\/\/\S+)\/resumable_upload\/$/.exec(line.trim());
      if (match) {
        resolvePromise(match[1]);
      } else {
        reject(new Error(`unexpected first line: ${line}`));
      }
    });
  });
  return {
    base: endpoint,
    media,
    root,
    /** Stops the server and removes its directory (media, database, test files). */
    async stop() {
      child.kill('SIGINT');
      await new Promise((r) => child.once('exit', r));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Runs `body(server, page)` with a fresh example server (started with `args`) and a new
 *  page of `browser`, and always closes both. */
export async function withServerPage(browser, args, body) {
  const server = await startServer(args);
  const page = await browser.newPage();
  try {
    await body(server, page);
  } finally {
    await page.close();
    await server.stop();
  }
}

/** Headless Chromium from Debian (CHROMIUM overrides the path). */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

/** A file of `size` random bytes in `dir`; returns its path and sha256. */
export function randomFile(dir, name, size) {
  const path = join(dir, name);
  const bytes = randomBytes(size);
  writeFileSync(path, bytes);
  return { path, sha256: sha256(bytes), size };
}

export function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

export function sha256File(path) {
  return sha256(readFileSync(path));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Serves `html` (and any `scripts`, name → file) on the example server's origin, under
 *  /__test/, through Playwright routing: the genuine clients then talk to the real
 *  endpoint without CORS. */
export async function servePage(page, base, html, scripts = {}) {
  // The app's own page hands out the browser's upload scope (a cookie), as a real page
  // with the widget would before any chunk; the test page below never reaches the server.
  await page.request.get(`${base}/`);
  await page.route(`${base}/__test/**`, async (route) => {
    const name = new URL(route.request().url()).pathname.replace('/__test/', '');
    if (name === 'page.html') {
      await route.fulfill({ contentType: 'text/html; charset=utf-8', body: html });
    } else if (scripts[name]) {
      await route.fulfill({ contentType: 'text/javascript', body: readFileSync(scripts[name]) });
    } else {
      await route.fulfill({ status: 404, body: 'no such test file' });
    }
  });
  await page.goto(`${base}/__test/page.html`);
}

/** Saves a document through the example's form (title + token) and returns the stored
 *  file's path on disk, read from the document page. */
export async function saveDocument(page, server, title, token) {
  const response = await page.request.post(`${server.base}/documents`, {
    form: { title, file: token },
    maxRedirects: 0,
  });
  if (response.status() !== 303) {
    throw new Error(`POST /documents answered ${response.status()}: ${await response.text()}`);
  }
  const location = response.headers().location;
  await page.goto(`${server.base}${location}`);
  const relative = await page.textContent('#path');
  return join(server.media, relative);
}
