/*
 * sea-orm-resumable widget client.
 *
 * Uploads a file in chunks with the resumable.js protocol (resumableChunkNumber, …) to the
 * widget's data-target: each chunk is first tested (GET; 200 = stored, 204 = send it) and
 * then sent (POST, multipart), several at once. Network trouble and 5xx answers are
 * retried with growing pauses; 4xx answers stop the upload and show the server's message.
 * Pausing aborts the requests in flight; resuming (or picking the same file again after a
 * page reload) tests every chunk again, so only the missing ones are sent. When the server
 * says the upload is complete, its token goes into the hidden input the form posts.
 *
 * Markup: see the crate's Widget (data-resumable-widget and data-rw-* attributes).
 * A page with <meta name="csrf-token" content="…"> gets that token sent as the
 * X-CSRF-Token header on every request.
 */
(function () {
  'use strict';

  var RETRY_FIRST_MS = 500;
  var RETRY_MAX_MS = 30000;
  // Longest pause between two questions to a server that has every chunk and is still
  // putting the file together.
  var ASSEMBLING_PROBE_MAX_MS = 10000;
  var MAX_ATTEMPTS = 12;
  /** A chunk upload that made progress, then none for this long (default; the widget's
   *  data-stall-ms overrides) is given up and retried: a connection can die without an
   *  error reaching the page. Longer than the server's own idle timeout (60 s). */
  var STALL_MS = 90000;

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute('content') : null;
  }

  /** resumable.js's default identifier, with the modification time: the same file picked
   *  again (after a reload) gets the same identifier and so resumes. */
  function identifierOf(file) {
    var name = (file.webkitRelativePath || file.name).replace(/[^0-9A-Za-z_-]/g, '');
    return file.size + '-' + name + '-' + (file.lastModified || 0);
  }

  function humanSize(bytes) {
    var units = ['bytes', 'kB', 'MB', 'GB', 'TB'];
    var value = bytes;
    var unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    return unit === 0 ? bytes + ' bytes' : value.toFixed(1) + ' ' + units[unit];
  }

  /** The server's one-line message from a JSON error body, or a fallback. */
  function messageOf(text, status) {
    try {
      var body = JSON.parse(text);
      if (body && typeof body.error === 'string') {
        return body.error;
      }
    } catch (e) {
      /* not JSON */
    }
    return 'the server refused the upload (HTTP ' + status + ')';
  }

  /**
   * One file's upload. Events (callbacks in `on`): progress(bytesDone, total),
   * complete(status), error(message), state(name) with name in
   * uploading | paused | retrying | complete | failed | cancelled.
   */
  function Upload(file, options, on) {
    this.file = file;
    this.target = options.target;
    this.field = options.field || null;
    this.chunkSize = Math.max(1, options.chunkSize || 4 * 1024 * 1024);
    this.simultaneous = Math.max(1, options.simultaneous || 3);
    this.stallMs = options.stallMs || STALL_MS;
    this.on = on;
    this.identifier = identifierOf(file);
    this.total = Math.max(1, Math.floor(file.size / this.chunkSize));
    this.done = {};
    this.doneBytes = 0;
    this.inFlight = {};
    this.queue = [];
    this.running = false;
    this.finished = false;
    this.attempts = 0;
    this.retryTimer = null;
    // The last answer's status, and how often the server said every chunk is in but the
    // file not yet complete (it is putting the file together).
    this.lastStatus = null;
    this.assemblingProbes = 0;
  }

  Upload.prototype.range = function (n) {
    var start = (n - 1) * this.chunkSize;
    var end = n === this.total ? this.file.size : n * this.chunkSize;
    return [start, end];
  };

  Upload.prototype.params = function (n) {
    var range = this.range(n);
    var params = {
      resumableChunkNumber: String(n),
      resumableChunkSize: String(this.chunkSize),
      resumableCurrentChunkSize: String(range[1] - range[0]),
      resumableTotalSize: String(this.file.size),
      resumableType: this.file.type || '',
      resumableIdentifier: this.identifier,
      resumableFilename: this.file.name,
      resumableRelativePath: this.file.webkitRelativePath || this.file.name,
      resumableTotalChunks: String(this.total)
    };
    if (this.field) {
      params.resumableField = this.field;
    }
    return params;
  };

  Upload.prototype.start = function () {
    if (this.finished || this.running) {
      return;
    }
    this.running = true;
    this.attempts = 0;
    this.probed = false;
    this.queue = [];
    for (var n = 1; n <= this.total; n++) {
      if (!this.done[n]) {
        this.queue.push(n);
      }
    }
    this.on.state('uploading');
    for (var i = 0; i < this.simultaneous; i++) {
      this.next();
    }
  };

  /** Fills the free request slots now (after a retry pause, or when back online). */
  Upload.prototype.kick = function () {
    if (!this.running) {
      return;
    }
    clearTimeout(this.retryTimer);
    this.on.state('uploading');
    var free = this.simultaneous - Object.keys(this.inFlight).length;
    for (var i = 0; i < free; i++) {
      this.next();
    }
  };

  Upload.prototype.pause = function () {
    this.running = false;
    clearTimeout(this.retryTimer);
    this.abortAll();
    this.on.state('paused');
  };

  Upload.prototype.cancel = function () {
    this.running = false;
    this.finished = true;
    clearTimeout(this.retryTimer);
    this.abortAll();
    this.on.state('cancelled');
  };

  Upload.prototype.abortAll = function () {
    var flying = this.inFlight;
    this.inFlight = {};
    Object.keys(flying).forEach(function (n) {
      flying[n].abort();
    });
  };

  Upload.prototype.bytesNow = function () {
    var bytes = this.doneBytes;
    var flying = this.inFlight;
    Object.keys(flying).forEach(function (n) {
      bytes += flying[n].loaded || 0;
    });
    return Math.min(bytes, this.file.size);
  };

  /** Checks the requests in flight every few seconds while the upload runs, and gives up
   *  (for a retry) those that stalled. */
  Upload.prototype.watch = function () {
    var self = this;
    if (this.watchdog) {
      return;
    }
    this.watchdog = setInterval(function () {
      var flying = self.inFlight;
      var names = Object.keys(flying);
      if (!self.running || names.length === 0) {
        clearInterval(self.watchdog);
        self.watchdog = null;
        return;
      }
      names.forEach(function (n) {
        var since = flying[n].activity;
        if (since !== null && Date.now() - since > self.stallMs && !flying[n].stalled) {
          flying[n].stalled = true;
          flying[n].abort();
        }
      });
    }, 2000);
  };

  /** Starts the next queued chunk, if running and a slot is free. */
  Upload.prototype.next = function () {
    if (!this.running || this.finished) {
      return;
    }
    var n = this.queue.shift();
    if (n === undefined) {
      if (Object.keys(this.inFlight).length > 0) {
        return;
      }
      var last = this.lastStatus;
      if (!this.probed) {
        // Every chunk is in, yet no answer said complete (a lost answer): ask once more.
        this.probed = true;
        this.testChunk(this.total);
      } else if (last && last.chunks_received >= last.total_chunks) {
        // The server has every chunk and is still putting the file together (on object
        // storage that takes a while for a large file): ask again, less and less often.
        var self = this;
        var wait = Math.min(1000 * Math.pow(2, this.assemblingProbes), ASSEMBLING_PROBE_MAX_MS);
        this.assemblingProbes++;
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(function () {
          if (self.running && !self.finished) {
            self.testChunk(self.total);
          }
        }, wait);
      } else {
        this.pause();
        this.on.error('the server has not confirmed the upload; press Resume to check again');
      }
      return;
    }
    this.testChunk(n);
  };

  Upload.prototype.request = function (method, n, body) {
    var self = this;
    var xhr = new XMLHttpRequest();
    var url = this.target;
    if (method === 'GET') {
      var query = new URLSearchParams(this.params(n)).toString();
      url += (url.indexOf('?') >= 0 ? '&' : '?') + query;
    }
    xhr.open(method, url);
    var csrf = csrfToken();
    if (csrf) {
      xhr.setRequestHeader('X-CSRF-Token', csrf);
    }
    var handle = {
      loaded: 0,
      // Watched only once bytes flow: a request may wait for a free connection first.
      activity: null,
      stalled: false,
      abort: function () {
        xhr.abort();
      }
    };
    this.inFlight[n] = handle;
    this.watch();
    if (method === 'POST') {
      var range = this.range(n);
      xhr.upload.onprogress = function (event) {
        // The body is the chunk plus a little multipart framing: count chunk bytes only.
        var share = event.total > 0 ? event.loaded / event.total : 0;
        handle.loaded = Math.floor((range[1] - range[0]) * Math.min(1, share));
        handle.activity = Date.now();
        self.on.progress(self.bytesNow(), self.file.size);
      };
    }
    return new Promise(function (resolve) {
      xhr.onload = function () {
        resolve({
          status: xhr.status,
          text: xhr.responseText,
          handle: handle,
          retryAfter: Number(xhr.getResponseHeader('Retry-After')) || 0
        });
      };
      xhr.onerror = xhr.ontimeout = function () {
        resolve({ status: 0, text: '', handle: handle });
      };
      xhr.onabort = function () {
        // A stalled request counts as a network failure; any other abort is ours.
        resolve({ status: handle.stalled ? 0 : -1, text: '', handle: handle });
      };
      xhr.send(body || null);
    });
  };

  Upload.prototype.testChunk = function (n) {
    var self = this;
    this.request('GET', n).then(function (answer) {
      if (self.inFlight[n] !== answer.handle) {
        return; // aborted (pause, cancel)
      }
      delete self.inFlight[n];
      if (answer.status === 200 || answer.status === 201) {
        self.chunkDone(n, answer.text);
      } else if (answer.status === 204 || answer.status === 404) {
        self.sendChunk(n);
      } else {
        self.failed(n, answer);
      }
    });
  };

  Upload.prototype.sendChunk = function (n) {
    var self = this;
    var range = this.range(n);
    var form = new FormData();
    var params = this.params(n);
    Object.keys(params).forEach(function (key) {
      form.append(key, params[key]);
    });
    form.append('file', this.file.slice(range[0], range[1]), 'blob');
    this.request('POST', n, form).then(function (answer) {
      if (self.inFlight[n] !== answer.handle) {
        return;
      }
      delete self.inFlight[n];
      if (answer.status === 200 || answer.status === 201) {
        self.chunkDone(n, answer.text);
      } else {
        self.failed(n, answer);
      }
    });
  };

  Upload.prototype.chunkDone = function (n, text) {
    if (!this.done[n]) {
      this.done[n] = true;
      var range = this.range(n);
      this.doneBytes += range[1] - range[0];
    }
    this.attempts = 0;
    var status = null;
    try {
      status = JSON.parse(text);
    } catch (e) {
      status = null;
    }
    this.lastStatus = status;
    this.on.progress(this.bytesNow(), this.file.size);
    if (status && status.complete && !this.finished) {
      this.finished = true;
      this.running = false;
      this.abortAll();
      this.on.complete(status);
      return;
    }
    this.next();
  };

  /** A chunk's request failed: 4xx is final (the server's message is shown) except 408
   *  and 429; anything else (network, 5xx) is retried after a growing pause (at least the
   *  server's Retry-After), showing the server's message if it gave one. */
  Upload.prototype.failed = function (n, answer) {
    var self = this;
    var retryable = answer.status === 408 || answer.status === 429;
    if (answer.status >= 400 && answer.status < 500 && !retryable) {
      this.running = false;
      this.finished = true;
      this.abortAll();
      this.on.error(messageOf(answer.text, answer.status));
      this.on.state('failed');
      return;
    }
    this.queue.unshift(n);
    this.attempts += 1;
    if (this.attempts > MAX_ATTEMPTS * this.simultaneous) {
      this.pause();
      this.on.error('the connection keeps failing; press Resume to try again');
      return;
    }
    var wait = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * Math.pow(2, Math.floor(this.attempts / this.simultaneous)));
    wait = wait / 2 + Math.random() * wait / 2;
    wait = Math.max(wait, (answer.retryAfter || 0) * 1000);
    this.on.state('retrying', answer.status > 0 ? messageOf(answer.text, answer.status) : null);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(function () {
      self.kick();
    }, wait);
  };

  /** Wires one widget's markup. */
  function init(root) {
    if (root.__resumableWidget) {
      return root.__resumableWidget;
    }
    var find = function (name) {
      return root.querySelector('[data-rw-' + name + ']');
    };
    var input = root.querySelector('input[type="file"]');
    var token = find('token');
    var fileBox = find('file');
    var nameBox = find('name');
    var sizeBox = find('size');
    var progress = find('progress');
    var statusBox = find('status');
    var speedBox = find('speed');
    var pauseButton = find('pause');
    var resumeButton = find('resume');
    var cancelButton = find('cancel');
    var errors = find('errors');
    var drop = find('drop');
    var maxSize = root.dataset.maxSize ? Number(root.dataset.maxSize) : null;
    var required = root.dataset.required === 'true';
    var upload = null;
    var speed = { bytes: 0, time: 0, value: 0 };

    function showError(message) {
      var item = document.createElement('li');
      item.textContent = message;
      errors.appendChild(item);
    }

    function clearErrors() {
      while (errors.firstChild) {
        errors.removeChild(errors.firstChild);
      }
    }

    function setButtons(state) {
      pauseButton.hidden = !(state === 'uploading' || state === 'retrying');
      resumeButton.hidden = state !== 'paused';
      cancelButton.hidden = !(
        state === 'uploading' ||
        state === 'retrying' ||
        state === 'paused' ||
        state === 'complete'
      );
      cancelButton.textContent = state === 'complete' ? 'Remove' : 'Cancel';
    }

    function setStatus(text) {
      statusBox.textContent = text;
    }

    var shown = 0;
    function onProgress(done, total) {
      // Never backwards (an aborted request's bytes), never 100 before the server says so.
      var percent = total > 0 ? Math.min(99, Math.floor((done * 100) / total)) : 99;
      percent = Math.max(shown, percent);
      var step = Math.floor(percent / 10) !== Math.floor(shown / 10);
      shown = percent;
      progress.value = percent;
      progress.setAttribute('aria-valuetext', percent + '%');
      var now = Date.now();
      if (speed.time === 0) {
        speed.time = now;
        speed.bytes = done;
        speed.start = now;
        speed.startBytes = done;
      } else if (!speed.value && now - speed.start >= 250) {
        // Until a whole second has passed: the average so far.
        speed.value = ((done - speed.startBytes) * 1000) / (now - speed.start);
      } else if (now - speed.time >= 1000) {
        var rate = ((done - speed.bytes) * 1000) / (now - speed.time);
        speed.value = speed.value ? speed.value * 0.5 + rate * 0.5 : rate;
        speed.time = now;
        speed.bytes = done;
      }
      // The live region speaks in 10% steps; the speed is for the eyes only.
      if (step || !statusBox.textContent) {
        setStatus(percent + '%');
      }
      speedBox.textContent = speed.value > 0 ? humanSize(speed.value) + '/s' : '';
    }

    function begin(file) {
      if (upload) {
        upload.cancel();
      }
      clearErrors();
      token.value = '';
      nameBox.textContent = file.name;
      sizeBox.textContent = humanSize(file.size);
      fileBox.hidden = false;
      progress.value = 0;
      shown = 0;
      setStatus('');
      speedBox.textContent = '';
      speed = { bytes: 0, time: 0, value: 0 };
      if (maxSize !== null && file.size > maxSize) {
        showError('the file is too large (' + humanSize(file.size) + '; at most ' + humanSize(maxSize) + ')');
        setStatus('');
        setButtons('failed');
        return;
      }
      upload = new Upload(
        file,
        {
          target: root.dataset.target,
          field: root.dataset.field,
          chunkSize: Number(root.dataset.chunkSize),
          simultaneous: Number(root.dataset.simultaneous),
          stallMs: Number(root.dataset.stallMs) || 0
        },
        {
          progress: onProgress,
          complete: function (status) {
            root.dataset.state = 'complete';
            token.value = status.token;
            input.required = false;
            progress.value = 100;
            progress.setAttribute('aria-valuetext', '100%');
            speedBox.textContent = '';
            setStatus('Uploaded');
            setButtons('complete');
            root.dispatchEvent(new CustomEvent('resumable:complete', { detail: status, bubbles: true }));
          },
          error: function (message) {
            showError(message);
            root.dispatchEvent(new CustomEvent('resumable:error', { detail: message, bubbles: true }));
          },
          state: function (state, message) {
            root.dataset.state = state;
            setButtons(state);
            if (state === 'paused') {
              setStatus('Paused at ' + progress.value + '%');
            } else if (state === 'retrying' && message) {
              setStatus('Server busy (' + message + '), retrying… (' + progress.value + '%)');
            } else if (state === 'retrying') {
              setStatus('Connection lost, retrying… (' + progress.value + '%)');
            } else if (state === 'failed') {
              setStatus('Failed');
            } else if (state === 'cancelled') {
              setStatus('');
            }
          }
        }
      );
      upload.start();
    }

    input.addEventListener('change', function () {
      if (input.files && input.files[0]) {
        begin(input.files[0]);
      }
    });
    pauseButton.addEventListener('click', function () {
      if (upload) {
        upload.pause();
      }
    });
    resumeButton.addEventListener('click', function () {
      if (upload) {
        upload.start();
      }
    });
    cancelButton.addEventListener('click', function () {
      if (upload) {
        upload.cancel();
        upload = null;
      }
      token.value = '';
      input.value = '';
      input.required = required;
      fileBox.hidden = true;
      progress.value = 0;
      shown = 0;
      setStatus('');
      speedBox.textContent = '';
      root.dataset.state = 'cancelled';
      setButtons('cancelled');
    });
    if (drop) {
      drop.addEventListener('dragover', function (event) {
        event.preventDefault();
        drop.classList.add('rw-over');
      });
      drop.addEventListener('dragleave', function () {
        drop.classList.remove('rw-over');
      });
      drop.addEventListener('drop', function (event) {
        event.preventDefault();
        drop.classList.remove('rw-over');
        var files = event.dataTransfer && event.dataTransfer.files;
        if (files && files[0]) {
          begin(files[0]);
        }
      });
    }
    // Browsers come back online: carry on by itself.
    window.addEventListener('online', function () {
      if (upload) {
        upload.kick();
      }
    });
    // A form shown again with a finished upload.
    if (token.value) {
      root.dataset.state = 'complete';
      setButtons('complete');
    }
    var api = {
      upload: function () {
        return upload;
      },
      begin: begin
    };
    root.__resumableWidget = api;
    return api;
  }

  function initAll() {
    var roots = document.querySelectorAll('[data-resumable-widget]');
    for (var i = 0; i < roots.length; i++) {
      init(roots[i]);
    }
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', initAll);
  } else {
    initAll();
  }

  window.ResumableWidget = { init: init, initAll: initAll, Upload: Upload, identifierOf: identifierOf };
})();
