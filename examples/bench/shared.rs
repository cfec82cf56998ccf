//! The `shared` table: ours with chunks and saved files on object storage (an
//! S3-compatible server on this machine, `--s3`; the ledger in the example's SQLite file)
//! against ours on local files, same client, same file. Object storage adds a PUT per
//! chunk, about ten small database queries per chunk, and at completion either one more
//! pass over the bytes (chunk objects, assembled into one object) or one request
//! (`--s3-parts`, chunks of 5 MiB or more as parts of one multipart upload); the save is a
//! copy inside the store.

use std::{fs::File, sync::Arc};

use crate::{
    Args, ServerRun,
    client::{self, Body, Run},
    human, measure_server,
    servers::Server,
    stats::{median, range},
};

/// One way of running the example.
struct Mode {
    name: &'static str,
    /// Flags after the common ones; `{prefix}` is replaced by a fresh bucket prefix.
    flags: &'static [&'static str],
    /// Only for chunks this large (S3's smallest part).
    min_chunk: u64,
}

const MODES: [Mode; 4] = [
    Mode {
        name: "local files, flush per chunk (default)",
        flags: &[],
        min_chunk: 0,
    },
    Mode {
        name: "local files, no flush",
        flags: &["--no-sync-data"],
        min_chunk: 0,
    },
    Mode {
        name: "S3: chunk objects, assembled at completion",
        flags: &[
            "--s3-bucket",
            "resumable-test",
            "--chunk-subdir",
            "{prefix}",
        ],
        min_chunk: 0,
    },
    Mode {
        name: "S3: chunks as multipart parts (--s3-parts)",
        flags: &[
            "--s3-bucket",
            "resumable-test",
            "--chunk-subdir",
            "{prefix}",
            "--s3-parts",
        ],
        min_chunk: 5 << 20,
    },
];

pub async fn run(
    args: &Args,
    http: &reqwest::Client,
    sink: &Server,
    source: Arc<File>,
) -> Result<(), String> {
    let Some(endpoint) = &args.s3 else {
        return Err(
            "the shared table needs --s3 (or RESUMABLE_TEST_S3): bash tests/setup/s3.sh".into(),
        );
    };
    let size = args.shared_size;
    let rounds = args.repeat.max(1);
    println!(
        "\nObject storage ({}; s3s-fs {endpoint} on this machine, its files on the same disk; ledger in SQLite; \
         multipart, 3 in flight; medians of {rounds} rounds, range in brackets):\n",
        human(size)
    );
    let (put, get) = store_alone(endpoint, &source, size).await?;
    println!(
        "The S3 server alone (object_store from this process, 8 MiB parts, 4 in flight): \
         PUT {put:.0} MiB/s, GET {get:.0} MiB/s.\n"
    );
    println!(
        "| mode | chunk | MiB/s | ÷ sink | completing request | save | server CPU s/GiB | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let env = [
        ("AWS_ACCESS_KEY_ID", "resumable-test"),
        ("AWS_SECRET_ACCESS_KEY", "resumable-test-secret"),
    ];
    for chunk_size in [1 << 20, 8 << 20] {
        let run = |url: &str| Run {
            url: url.to_owned(),
            body: Body::Multipart,
            chunk_size,
            in_flight: 3,
        };
        let mut sink_rates = Vec::new();
        for round in 0..rounds {
            let id = format!("{size}-shared-sink-{chunk_size}-{round}");
            let limit =
                client::upload(http, &run(&sink.endpoint), source.clone(), size, &id).await?;
            sink_rates.push(limit.mib_per_s());
        }
        let sink_rate = median(&sink_rates);
        for mode in MODES.iter().filter(|m| chunk_size >= m.min_chunk) {
            let mut runs: Vec<ServerRun> = Vec::new();
            for round in 0..rounds {
                let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
                let mut flags: Vec<&str> = mode
                    .flags
                    .iter()
                    .map(|f| if *f == "{prefix}" { prefix.as_str() } else { f })
                    .collect();
                if mode.flags.contains(&"--s3-bucket") {
                    flags.extend(["--s3-endpoint", endpoint.as_str()]);
                }
                let root = args.dir.join("run");
                let _ = std::fs::remove_dir_all(&root);
                let server = Server::example_with(&root.join("media"), &flags, &env)?;
                let id = format!("{size}-shared-{chunk_size}-{round}");
                runs.push(
                    measure_server(http, server, &root, &run, (source.clone(), size, &id)).await?,
                );
                if mode.flags.contains(&"--s3-bucket") {
                    delete_saved_files(endpoint).await?;
                }
            }
            let column = |f: &dyn Fn(&ServerRun) -> f64| {
                let values: Vec<f64> = runs.iter().map(f).collect();
                (median(&values), range(&values))
            };
            let (rate, (lo, hi)) = column(&|r| r.outcome.mib_per_s());
            let (completing, _) = column(&|r| r.outcome.completing_request.as_secs_f64() * 1e3);
            let (save, _) = column(&|r| r.save.as_secs_f64() * 1e3);
            let gib = size as f64 / (1u64 << 30) as f64;
            let (cpu, _) = column(&|r| r.cpu_seconds / gib);
            let (rss, _) = column(&|r| r.peak_rss_mib);
            println!(
                "| {} | {} | {rate:.0} [{lo:.0}–{hi:.0}] | {:.0} % | {completing:.1} ms | {save:.1} ms | {cpu:.2} | {rss:.1} MiB |",
                mode.name,
                human(chunk_size),
                100.0 * rate / sink_rate,
            );
        }
    }
    Ok(())
}

/// How fast the S3 server takes and gives the file by itself: one multipart PUT and one GET
/// of it, in MiB/s.
async fn store_alone(endpoint: &str, source: &File, size: u64) -> Result<(f64, f64), String> {
    use futures_util::StreamExt;
    use object_store::{ObjectStoreExt, WriteMultipart, path::Path};
    use std::os::unix::fs::FileExt;
    let s3 = bucket(endpoint)?;
    let key = Path::from(format!("bench-alone-{}", uuid::Uuid::new_v4().simple()));
    let mib = size as f64 / (1 << 20) as f64;
    let started = std::time::Instant::now();
    let mut writer = WriteMultipart::new_with_chunk_size(
        s3.put_multipart(&key).await.map_err(|e| e.to_string())?,
        8 << 20,
    );
    let mut block = vec![0u8; 8 << 20];
    let mut offset = 0;
    while offset < size {
        let n = source
            .read_at(&mut block, offset)
            .map_err(|e| e.to_string())?;
        writer
            .wait_for_capacity(4)
            .await
            .map_err(|e| e.to_string())?;
        writer.write(&block[..n]);
        offset += n as u64;
    }
    writer.finish().await.map_err(|e| e.to_string())?;
    let put = mib / started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let mut body = s3.get(&key).await.map_err(|e| e.to_string())?.into_stream();
    while let Some(piece) = body.next().await {
        piece.map_err(|e| e.to_string())?;
    }
    let get = mib / started.elapsed().as_secs_f64();
    s3.delete(&key).await.map_err(|e| e.to_string())?;
    Ok((put, get))
}

/// A client of the test bucket at `endpoint`.
fn bucket(endpoint: &str) -> Result<object_store::aws::AmazonS3, String> {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name("resumable-test")
        .with_region("us-east-1")
        .with_access_key_id("resumable-test")
        .with_secret_access_key("resumable-test-secret")
        .with_virtual_hosted_style_request(false)
        .build()
        .map_err(|e| e.to_string())
}

/// Deletes the files the rounds saved into the bucket (`documents/…/bench*.bin`, the
/// example's upload_to and the client's file name), so repeated runs do not fill the disk.
async fn delete_saved_files(endpoint: &str) -> Result<(), String> {
    use futures_util::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt, path::Path};
    let s3 = bucket(endpoint)?;
    let saved: Vec<Path> = s3
        .list(Some(&Path::from("documents")))
        .map_ok(|object| object.location)
        .try_filter(|key| {
            let name = key.filename().unwrap_or_default();
            std::future::ready(name.starts_with("bench") && name.ends_with(".bin"))
        })
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    for key in saved {
        s3.delete(&key).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
