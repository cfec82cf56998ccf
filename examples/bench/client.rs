//! The load client: one file sent with the resumable.js protocol (a test GET before each
//! chunk, as resumable.js does by default, then the chunk as multipart or a raw body),
//! `in_flight` chunks at a time. The same client drives every server in the table.

use futures_util::StreamExt;
use std::{
    fs::File,
    os::unix::fs::FileExt,
    sync::Arc,
    time::{Duration, Instant},
};

/// How chunk bodies are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// `multipart/form-data` with the parameters as fields (resumable.js default).
    Multipart,
    /// The raw bytes, parameters in the query string (`method: 'octet'`).
    Octet,
}

impl Body {
    pub fn name(self) -> &'static str {
        match self {
            Body::Multipart => "multipart",
            Body::Octet => "octet",
        }
    }
}

/// One upload to run.
#[derive(Clone, Debug)]
pub struct Run {
    pub url: String,
    pub body: Body,
    pub chunk_size: u64,
    pub in_flight: usize,
}

/// What one upload measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub bytes: u64,
    pub chunks: u64,
    pub elapsed: Duration,
    /// From sending the request that completed the upload to its answer.
    pub completing_request: Duration,
    /// The median of the upload's last chunk requests but the completing one (the last
    /// 32 chunks; from sending to the answer), to tell what completion adds from what a
    /// chunk costs at that point of the upload.
    pub typical_chunk_request: Duration,
    /// The token in the completing answer, if the server gave one.
    pub token: Option<String>,
    /// How many answers said the upload is complete (1 for a correct server).
    pub completions: u32,
    /// CPU seconds this client (the whole bench process) used for the upload.
    pub client_cpu_seconds: f64,
    /// How long a `sync` right after the upload took: what the server left to the page
    /// cache going to the disk (set by the caller with [`Outcome::sync`]).
    pub sync_after: Duration,
}

impl Outcome {
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / (1 << 20) as f64
    }

    /// MiB/s counting the `sync` after the upload: the rate at which the bytes reached
    /// the disk, whatever the server flushed itself.
    pub fn on_disk_mib_per_s(&self) -> f64 {
        self.bytes as f64 / (self.elapsed + self.sync_after).as_secs_f64() / (1 << 20) as f64
    }

    /// Runs `sync` (every file system's dirty pages to the disk, waiting for it) and
    /// records how long it took.
    pub fn sync(&mut self) {
        let started = Instant::now();
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
        self.sync_after = started.elapsed();
    }
}

/// Sends `file` (of `total` bytes) as a new upload named `identifier`.
pub async fn upload(
    http: &reqwest::Client,
    run: &Run,
    file: Arc<File>,
    total: u64,
    identifier: &str,
) -> Result<Outcome, String> {
    let chunks = (total / run.chunk_size).max(1);
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let answers = futures_util::stream::iter(1..=chunks)
        .map(|n| {
            let (file, http, run) = (file.clone(), http.clone(), run.clone());
            let identifier = identifier.to_owned();
            async move {
                let answer = send_chunk(&http, &run, &file, total, chunks, n, &identifier).await;
                answer.map(|answer| (n, answer))
            }
        })
        .buffer_unordered(run.in_flight)
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed();
    let client_cpu_seconds = own_cpu_seconds() - cpu_before;
    let mut completing = None;
    let mut completions = 0;
    let mut others = Vec::new();
    for answer in answers {
        let (n, (took, status, body)) = answer?;
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        // Ours answers `"complete": true` (and a token); django2-resumable answers 201.
        if value["complete"] == true || status == 201 {
            completing = Some((took, value["token"].as_str().map(str::to_owned)));
            completions += 1;
        } else if !took.is_zero() && n + 32 > chunks {
            others.push(took);
        }
    }
    others.sort();
    let typical_chunk_request = others.get(others.len() / 2).copied().unwrap_or_default();
    let (completing_request, token) = completing.unwrap_or((Duration::ZERO, None));
    Ok(Outcome {
        bytes: total,
        chunks,
        elapsed,
        completing_request,
        typical_chunk_request,
        token,
        completions,
        client_cpu_seconds,
        sync_after: Duration::ZERO,
    })
}

fn own_cpu_seconds() -> f64 {
    crate::servers::cpu_seconds(std::process::id())
}

/// Tests chunk `n`, sends it if missing; returns how long the chunk's POST took and its
/// answer (status and body).
async fn send_chunk(
    http: &reqwest::Client,
    run: &Run,
    file: &File,
    total: u64,
    chunks: u64,
    n: u64,
    identifier: &str,
) -> Result<(Duration, u16, String), String> {
    let start = (n - 1) * run.chunk_size;
    let end = if n == chunks {
        total
    } else {
        start + run.chunk_size
    };
    let params: Vec<(&str, String)> = vec![
        ("resumableChunkNumber", n.to_string()),
        ("resumableChunkSize", run.chunk_size.to_string()),
        ("resumableCurrentChunkSize", (end - start).to_string()),
        ("resumableTotalSize", total.to_string()),
        ("resumableType", "application/octet-stream".into()),
        ("resumableIdentifier", identifier.to_owned()),
        ("resumableFilename", "bench.bin".into()),
        ("resumableRelativePath", "bench.bin".into()),
        ("resumableTotalChunks", chunks.to_string()),
    ];
    let tested = http
        .get(&run.url)
        .query(&params)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if tested.status() == 200 {
        let body = tested.text().await.unwrap_or_default();
        return Ok((Duration::ZERO, 200, body));
    }
    let mut bytes = vec![0; (end - start) as usize];
    file.read_exact_at(&mut bytes, start)
        .map_err(|e| e.to_string())?;
    let request = match run.body {
        Body::Octet => http
            .post(&run.url)
            .query(&params)
            .header("content-type", "application/octet-stream")
            .body(bytes),
        Body::Multipart => {
            // Like resumable.js's `query` option: parameters in the target URL go into
            // the form as well (django2-resumable reads its own from there).
            let in_url: Vec<(String, String)> = reqwest::Url::parse(&run.url)
                .map(|url| url.query_pairs().into_owned().collect())
                .unwrap_or_default();
            let form = params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .chain(in_url)
                .fold(reqwest::multipart::Form::new(), |form, (k, v)| {
                    form.text(k, v)
                })
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(bytes).file_name("blob"),
                );
            http.post(&run.url).multipart(form)
        }
    };
    let sent = Instant::now();
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("chunk {n}: {status} {body}"));
    }
    Ok((sent.elapsed(), status.as_u16(), body))
}

/// Sends `file` to a tus server (tus 1.0 core: one POST to create, then PATCHes of
/// `chunk_size` bytes one after another, as the core protocol requires).
pub async fn upload_tus(
    http: &reqwest::Client,
    url: &str,
    file: Arc<File>,
    total: u64,
    chunk_size: u64,
) -> Result<Outcome, String> {
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let created = http
        .post(url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", total.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if created.status() != 201 {
        return Err(format!("tus create: {}", created.status()));
    }
    let location = created
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("tus create: no Location")?;
    let location = reqwest::Url::parse(url)
        .and_then(|base| base.join(location))
        .map_err(|e| e.to_string())?;
    let (mut offset, mut chunks, mut last) = (0u64, 0u64, Duration::ZERO);
    while offset < total {
        let len = chunk_size.min(total - offset);
        let mut bytes = vec![0; len as usize];
        file.read_exact_at(&mut bytes, offset)
            .map_err(|e| e.to_string())?;
        let sent = Instant::now();
        let response = http
            .patch(location.clone())
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        last = sent.elapsed();
        if response.status() != 204 {
            return Err(format!("tus PATCH at {offset}: {}", response.status()));
        }
        offset += len;
        chunks += 1;
    }
    Ok(Outcome {
        bytes: total,
        chunks,
        elapsed: started.elapsed(),
        completing_request: last,
        typical_chunk_request: Duration::ZERO,
        token: None,
        completions: u32::from(offset == total),
        client_cpu_seconds: own_cpu_seconds() - cpu_before,
        sync_after: Duration::ZERO,
    })
}
