//! A command-line upload client speaking the resumable.js protocol: tests each chunk, then
//! sends the missing ones, several at a time. Handy for trying the server and measuring it.
//!
//! ```text
//! cargo run --release --example upload_file -- --url http://127.0.0.1:8000/resumable_upload/ big.iso
//! ```

use clap::Parser;
use futures_util::StreamExt;
use std::{os::unix::fs::FileExt, path::PathBuf, sync::Arc, time::Instant};

/// Uploads one file to a resumable.js endpoint.
#[derive(Debug, Parser)]
struct Args {
    /// Endpoint URL.
    #[arg(long, default_value = "http://127.0.0.1:8000/resumable_upload/")]
    url: String,
    /// Chunk size in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    chunk_size: u64,
    /// Chunks in flight at once.
    #[arg(long, default_value_t = 3)]
    parallel: usize,
    /// Send raw chunk bodies (resumable.js `method: 'octet'`) instead of multipart.
    #[arg(long)]
    octet: bool,
    /// Skip the test request before each chunk.
    #[arg(long)]
    no_test: bool,
    /// The file to send.
    file: PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Arc::new(Args::parse());
    let file = Arc::new(std::fs::File::open(&args.file)?);
    let total = file.metadata()?.len();
    let name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file")
        .to_owned();
    let identifier: String = format!("{total}-{name}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let chunks = (total / args.chunk_size).max(1);
    let http = reqwest::Client::new();
    let started = Instant::now();

    let results = futures_util::stream::iter(1..=chunks)
        .map(|n| {
            let (args, file, http) = (args.clone(), file.clone(), http.clone());
            let (name, identifier) = (name.clone(), identifier.clone());
            async move {
                let start = (n - 1) * args.chunk_size;
                let end = if n == chunks {
                    total
                } else {
                    start + args.chunk_size
                };
                let params: Vec<(&str, String)> = vec![
                    ("resumableChunkNumber", n.to_string()),
                    ("resumableChunkSize", args.chunk_size.to_string()),
                    ("resumableCurrentChunkSize", (end - start).to_string()),
                    ("resumableTotalSize", total.to_string()),
                    ("resumableIdentifier", identifier),
                    ("resumableFilename", name),
                    ("resumableTotalChunks", chunks.to_string()),
                ];
                if !args.no_test {
                    let tested = http.get(&args.url).query(&params).send().await?;
                    if tested.status() == 200 {
                        return Ok::<u64, Box<dyn std::error::Error + Send + Sync>>(0);
                    }
                }
                let mut bytes = vec![0; (end - start) as usize];
                file.read_exact_at(&mut bytes, start)?;
                let request = if args.octet {
                    http.post(&args.url).query(&params).body(bytes)
                } else {
                    let form = params
                        .iter()
                        .fold(reqwest::multipart::Form::new(), |f, (k, v)| {
                            f.text(*k, v.clone())
                        })
                        .part(
                            "file",
                            reqwest::multipart::Part::bytes(bytes).file_name("blob"),
                        );
                    http.post(&args.url).multipart(form)
                };
                let response = request.send().await?;
                let status = response.status();
                let body = response.text().await?;
                if status != 200 {
                    return Err(format!("chunk {n}: {status} {body}").into());
                }
                Ok(end - start)
            }
        })
        .buffer_unordered(args.parallel)
        .collect::<Vec<_>>()
        .await;
    let mut sent = 0;
    for result in results {
        sent += result.map_err(|e| e.to_string())?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "sent {sent} of {total} bytes ({chunks} chunks; the rest was stored already) in {seconds:.2} s: {:.1} MiB/s",
        sent as f64 / seconds / (1 << 20) as f64
    );
    // Ask once more, so what is printed is the server's final word on the upload.
    let params = [
        ("resumableChunkNumber", "1".to_owned()),
        ("resumableChunkSize", args.chunk_size.to_string()),
        (
            "resumableCurrentChunkSize",
            total
                .min(if chunks == 1 { total } else { args.chunk_size })
                .to_string(),
        ),
        ("resumableTotalSize", total.to_string()),
        ("resumableIdentifier", identifier),
        ("resumableFilename", name),
    ];
    let status = http
        .get(&args.url)
        .query(&params)
        .send()
        .await?
        .text()
        .await?;
    println!("status: {status}");
    Ok(())
}
