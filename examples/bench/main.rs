//! The benchmark suite: the example upload server against this machine's limits, driven
//! by one load client (resumable.js protocol, multipart and octet), with Markdown tables
//! printed as it goes (for BENCHMARKS.md).
//!
//! ```text
//! cargo build --release --examples && target/release/examples/bench            # whole suite
//! target/release/examples/bench --tables matrix --sizes 64M --chunk-sizes 1M --in-flight 3
//! target/release/examples/bench --tables head-to-head --repeat 9                # just that
//! bash bench/peers/run.sh --tables head-to-head                                # with peers
//! ```
//!
//! Tables (`--tables`): `matrix` (sizes × chunk sizes × in flight × bodies, one run each),
//! `chunks` (per-chunk cost as the chunk count grows), `completion` (smallest vs largest
//! size over `--repeat` rounds) and `head-to-head` (1 GiB: the sink, ours with and without
//! a flush per chunk, the peers; `--repeat` rounds in a rotated order, medians of
//! per-round ratios, CPU seconds per GiB, MiB/s counting the `sync` after each upload).
//!
//! Measured in the same run: the HTTP sink (the same client sending the same bytes to a
//! server that only reads them) and the disk (writing into the page cache, and with
//! fsync), so ratios hold on a noisy machine. Each upload gets a fresh server process and
//! media root; its peak RSS comes from `/proc`. Test files (random bytes) are made once in
//! `--dir`, read into the page cache, and reused; uploaded copies are deleted after each
//! run.

mod client;
mod completion;
mod head_to_head;
mod servers;
mod shared;
mod stats;

use clap::Parser;
use client::{Body, Outcome, Run};
use servers::{Flush, Server};
use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

/// Benchmark of resumable uploads against this machine's limits.
#[derive(Debug, Parser)]
struct Args {
    /// File sizes (K, M, G suffixes: powers of 1024).
    #[arg(long, value_delimiter = ',', default_value = "64M,1G,4G", value_parser = parse_size)]
    sizes: Vec<u64>,
    /// Chunk sizes.
    #[arg(long, value_delimiter = ',', default_value = "256K,1M,8M", value_parser = parse_size)]
    chunk_sizes: Vec<u64>,
    /// Chunks in flight at once.
    #[arg(long, value_delimiter = ',', default_value = "1,3,8")]
    in_flight: Vec<usize>,
    /// Chunk bodies: multipart, octet.
    #[arg(long, value_delimiter = ',', default_value = "multipart,octet", value_parser = parse_body)]
    bodies: Vec<Body>,
    /// Chunk counts for the per-chunk cost table (64 KiB chunks, one in flight).
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000,20000")]
    chunk_counts: Vec<u64>,
    /// django2-resumable's upload URL (with its `content_type_id` and `field_name` query),
    /// for the peers table; bench/peers/run.sh starts it under gunicorn.
    #[arg(long)]
    django: Option<String>,
    /// rustus's tus endpoint, for the peers table; bench/peers/run.sh starts it.
    #[arg(long)]
    rustus: Option<String>,
    /// rustus started with `--force-fsync true` (a flush per PATCH, like our default), for
    /// the peers table; bench/peers/run.sh starts it.
    #[arg(long)]
    rustus_fsync: Option<String>,
    /// The example server binary of another build (say, the commit before a change), run
    /// in the head-to-head table beside this build's in both flush modes (multipart).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// File size of the head-to-head table (chunks of 1 MiB, 3 in flight).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    peer_size: u64,
    /// Rounds of the head-to-head table; it reports medians and ranges over them. Every
    /// round runs each server once, in a rotated order.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Which tables to run: matrix (sizes × chunk sizes × in flight × bodies, one run
    /// each), chunks (per-chunk cost), completion (smallest vs largest size, `--repeat`
    /// rounds), head-to-head (the sink, ours and the peers, `--repeat` rounds).
    #[arg(long, value_delimiter = ',', default_value = "matrix,chunks,completion,head-to-head",
          value_parser = ["matrix", "chunks", "completion", "head-to-head", "shared"])]
    tables: Vec<String>,
    /// S3-compatible endpoint for the `shared` table (tests/setup/s3.sh starts s3s-fs and
    /// prints it): ours with chunks and files on object storage, against ours on local
    /// files. Not in the default tables.
    #[arg(long, env = "RESUMABLE_TEST_S3")]
    s3: Option<String>,
    /// File size of the `shared` table.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    shared_size: u64,
    /// Where test files and media roots go.
    #[arg(long, default_value = "target/bench")]
    dir: PathBuf,
    /// Run as the HTTP sink (used by the benchmark itself).
    #[arg(long, hide = true)]
    serve_sink: bool,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number.parse().map_err(|_| format!("not a size: {text}"))?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("unknown unit in {text}")),
    };
    Ok(number << shift)
}

fn parse_body(text: &str) -> Result<Body, String> {
    match text {
        "multipart" => Ok(Body::Multipart),
        "octet" => Ok(Body::Octet),
        _ => Err(format!("{text}: multipart or octet")),
    }
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b => format!("{} KiB", b >> 10),
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    if args.serve_sink {
        servers::serve_sink().await;
        return Ok(());
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| e.to_string())?;
    let table = |name: &str| args.tables.iter().any(|t| t == name);
    let largest = [
        if table("matrix") || table("completion") {
            args.sizes.iter().copied().max().unwrap_or(0)
        } else {
            0
        },
        if table("chunks") {
            args.chunk_counts.iter().copied().max().unwrap_or(0) * (64 << 10)
        } else {
            0
        },
        if table("head-to-head") && args.repeat > 0 {
            args.peer_size
        } else {
            0
        },
        if table("shared") { args.shared_size } else { 0 },
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let source = test_file(&args.dir, largest)?;
    println!("# Benchmark ({})\n", machine());

    let disk = disk_limit(&args.dir)?;
    println!(
        "Disk: {:.0} MiB/s into the page cache (1 GiB in 8 MiB writes, best of 3); {:.0} MiB/s \
         with an fdatasync after every 1 MiB (256 MiB).\n",
        disk.0, disk.1
    );

    let http = reqwest::Client::new();
    let sink = Server::sink()?;
    if table("matrix") {
        matrix(&args, &http, &sink, &source).await?;
    }
    if table("chunks") {
        chunk_costs(&args, &http, &sink, &source).await?;
    }
    if table("completion") && args.repeat > 0 {
        completion::run(&args, &http, source.clone()).await?;
    }
    if table("head-to-head") && args.repeat > 0 {
        head_to_head::run(&args, &http, &sink, source.clone()).await?;
    }
    if table("shared") {
        shared::run(&args, &http, &sink, source).await?;
    }
    Ok(())
}

/// The main table: every size × chunk size × in flight × body, one run each.
async fn matrix(
    args: &Args,
    http: &reqwest::Client,
    sink: &Server,
    source: &Arc<File>,
) -> Result<(), String> {
    println!(
        "| file | chunk | body | in flight | sink MiB/s | server MiB/s | server/sink | completing request | save (move) | server peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut row = 0u32;
    for &size in &args.sizes {
        for &chunk_size in &args.chunk_sizes {
            for &in_flight in &args.in_flight {
                for &body in &args.bodies {
                    row += 1;
                    let run = |url: &str| Run {
                        url: url.to_owned(),
                        body,
                        chunk_size,
                        in_flight,
                    };
                    let id = format!("{size}-bench-{row}");
                    let limit =
                        client::upload(http, &run(&sink.endpoint), source.clone(), size, &id)
                            .await?;
                    let ServerRun {
                        outcome: ours,
                        save,
                        peak_rss_mib: rss,
                        ..
                    } = server_run(
                        http,
                        &args.dir,
                        &run,
                        source.clone(),
                        size,
                        &id,
                        Flush::EveryChunk,
                    )
                    .await?;
                    println!(
                        "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} % | {:.1} ms | {:.1} ms | {:.1} MiB |",
                        human(size),
                        human(chunk_size),
                        body.name(),
                        in_flight,
                        limit.mib_per_s(),
                        ours.mib_per_s(),
                        100.0 * ours.mib_per_s() / limit.mib_per_s(),
                        ours.completing_request.as_secs_f64() * 1e3,
                        save.as_secs_f64() * 1e3,
                        rss,
                    );
                }
            }
        }
    }

    Ok(())
}

/// The per-chunk cost table: one upload of more and more 64 KiB chunks.
async fn chunk_costs(
    args: &Args,
    http: &reqwest::Client,
    sink: &Server,
    source: &Arc<File>,
) -> Result<(), String> {
    println!(
        "\nPer-chunk cost as one upload's chunk count grows (64 KiB chunks, octet, 1 in flight):\n"
    );
    println!("| chunks | file | server µs/chunk | sink µs/chunk | vs first |");
    println!("|---|---|---|---|---|");
    let mut first = None;
    for &count in &args.chunk_counts {
        let run = |url: &str| Run {
            url: url.to_owned(),
            body: Body::Octet,
            chunk_size: 64 << 10,
            in_flight: 1,
        };
        let size = count * (64 << 10);
        let id = format!("{size}-chunks-{count}");
        let limit = client::upload(http, &run(&sink.endpoint), source.clone(), size, &id).await?;
        let ours = server_run(
            http,
            &args.dir,
            &run,
            source.clone(),
            size,
            &id,
            Flush::EveryChunk,
        )
        .await?
        .outcome;
        let per_chunk = |o: &Outcome| o.elapsed.as_secs_f64() * 1e6 / o.chunks as f64;
        let base = *first.get_or_insert(per_chunk(&ours));
        println!(
            "| {count} | {} | {:.0} | {:.0} | {:.2}× |",
            human(size),
            per_chunk(&ours),
            per_chunk(&limit),
            per_chunk(&ours) / base
        );
    }
    Ok(())
}

/// What one upload to a fresh example server measured.
pub(crate) struct ServerRun {
    outcome: Outcome,
    /// The save's duration (POST /documents, which moves the file into place).
    save: Duration,
    /// The server's peak RSS during the upload, in MiB.
    peak_rss_mib: f64,
    /// CPU seconds the server used for the upload (its start excluded).
    cpu_seconds: f64,
}

/// One upload to a fresh example server, then the save of a document with it.
async fn server_run(
    http: &reqwest::Client,
    dir: &Path,
    run: &impl Fn(&str) -> Run,
    source: Arc<File>,
    size: u64,
    id: &str,
    flush: Flush,
) -> Result<ServerRun, String> {
    server_run_of(http, (None, dir), run, source, size, id, flush).await
}

/// [`server_run`] with the example server of `binary` (another build), or this build's.
async fn server_run_of(
    http: &reqwest::Client,
    (binary, dir): (Option<&Path>, &Path),
    run: &impl Fn(&str) -> Run,
    source: Arc<File>,
    size: u64,
    id: &str,
    flush: Flush,
) -> Result<ServerRun, String> {
    let root = dir.join("run");
    let _ = std::fs::remove_dir_all(&root);
    let server = Server::example_from(binary, &root.join("media"), flush)?;
    measure_server(http, server, &root, run, (source, size, id)).await
}

/// Uploads `source` to `server`, saves it as a document, and stops the server.
pub(crate) async fn measure_server(
    http: &reqwest::Client,
    server: Server,
    root: &Path,
    run: &impl Fn(&str) -> Run,
    (source, size, id): (Arc<File>, u64, &str),
) -> Result<ServerRun, String> {
    server.reset_peak_rss();
    let cpu_before = server.cpu_seconds();
    let mut outcome = client::upload(http, &run(&server.endpoint), source, size, id).await?;
    let cpu_seconds = server.cpu_seconds() - cpu_before;
    let peak_rss_mib = server.peak_rss_mib();
    outcome.sync();
    let token = outcome.token.clone().ok_or("the upload did not complete")?;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let saved = no_redirects
        .post(format!("{}/documents", server.base()))
        .form(&[("title", "bench"), ("file", token.as_str())])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let save = started.elapsed();
    if saved.status() != 303 {
        return Err(format!("save answered {}", saved.status()));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(root);
    Ok(ServerRun {
        outcome,
        save,
        peak_rss_mib,
        cpu_seconds,
    })
}

/// A file of `size` random bytes in `dir`, made once, read into the page cache.
fn test_file(dir: &Path, size: u64) -> Result<Arc<File>, String> {
    let path = dir.join(format!("source-{size}.bin"));
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(size) {
        eprintln!("making {} ({})", path.display(), human(size));
        let mut file = std::io::BufWriter::with_capacity(
            8 << 20,
            File::create(&path).map_err(|e| e.to_string())?,
        );
        let mut block = vec![0u8; 8 << 20];
        let mut left = size;
        while left > 0 {
            rand::fill(&mut block[..]);
            let n = left.min(block.len() as u64) as usize;
            file.write_all(&block[..n]).map_err(|e| e.to_string())?;
            left -= n as u64;
        }
        file.flush().map_err(|e| e.to_string())?;
    }
    // Read once, so that every run reads it from the page cache, the first one included.
    let file = File::open(&path).map_err(|e| e.to_string())?;
    let mut block = vec![0u8; 8 << 20];
    let mut offset = 0;
    while offset < size {
        let n = std::os::unix::fs::FileExt::read_at(&file, &mut block, offset)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        offset += n as u64;
    }
    Ok(Arc::new(file))
}

/// The disk: MiB/s writing 1 GiB in 8 MiB blocks into the page cache (best of three, a
/// new file each time), and writing 256 MiB in 1 MiB blocks with an `fdatasync` after
/// each, as the server does with 1 MiB chunks and `sync_data`.
fn disk_limit(dir: &Path) -> Result<(f64, f64), String> {
    let path = dir.join("disk-test.bin");
    let timed = |block_len: usize, blocks: usize, sync_each: bool| -> Result<f64, String> {
        let _ = std::fs::remove_file(&path);
        let block = vec![7u8; block_len];
        let mut file = File::create(&path).map_err(|e| e.to_string())?;
        let started = Instant::now();
        for _ in 0..blocks {
            file.write_all(&block).map_err(|e| e.to_string())?;
            if sync_each {
                file.sync_data().map_err(|e| e.to_string())?;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        drop(file);
        let _ = std::fs::remove_file(&path);
        Ok((block_len * blocks) as f64 / (1 << 20) as f64 / seconds)
    };
    let mut cached = 0.0f64;
    for _ in 0..3 {
        cached = cached.max(timed(8 << 20, 128, false)?);
    }
    let flushed = timed(1 << 20, 256, true)?;
    Ok((cached, flushed))
}

/// Cores, memory and kernel, for the table's heading.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(String::from("?"), |kb| {
            format!("{:.0} GiB", kb as f64 / 1048576.0)
        });
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {memory} RAM, loopback")
}
