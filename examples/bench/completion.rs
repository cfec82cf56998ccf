//! The size-independence table: the smallest and the largest file of `--sizes`, `--repeat`
//! rounds each (1 MiB chunks, 3 in flight, multipart, a flush per chunk): how long the
//! completing request and the save take, as medians, and the server's peak RSS.

use crate::{
    Args,
    client::{Body, Run},
    human, server_run,
    servers::Flush,
    stats::{median, range},
};
use std::{fs::File, sync::Arc};

/// Runs the rounds and prints the table and the ratios.
pub async fn run(args: &Args, http: &reqwest::Client, source: Arc<File>) -> Result<(), String> {
    let (Some(&small), Some(&large)) = (args.sizes.iter().min(), args.sizes.iter().max()) else {
        return Ok(());
    };
    let sizes = [small, large];
    let run = |url: &str| Run {
        url: url.to_owned(),
        body: Body::Multipart,
        chunk_size: 1 << 20,
        in_flight: 3,
    };
    // Per size, in ms: completing request, the upload's typical chunk request, save; and
    // peak RSS in MiB.
    let mut measured: [[Vec<f64>; 4]; 2] = Default::default();
    for round in 0..args.repeat {
        eprintln!("completion: round {} of {}", round + 1, args.repeat);
        for i in 0..2 {
            let index = (i + round) % 2;
            let size = sizes[index];
            let _ = std::process::Command::new("sync").status();
            let id = format!("{size}-completion-{round}-{}", std::process::id());
            let crate::ServerRun {
                outcome,
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
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            measured[index][0].push(ms(outcome.completing_request));
            measured[index][1].push(ms(outcome.typical_chunk_request));
            measured[index][2].push(ms(save));
            measured[index][3].push(rss);
        }
    }
    println!(
        "\nCompletion and save against file size (1 MiB chunks, 3 in flight, multipart, a \
         flush per chunk; {} rounds; medians):\n",
        args.repeat
    );
    println!(
        "| file | completing request | min–max | last 32 chunk requests (median) | completing − those (median of per-run differences) | save (move) | min–max | server peak RSS (max) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // What completion adds: the completing request minus a chunk request near the end of
    // the same upload, per run.
    let added = |index: usize| -> Vec<f64> {
        measured[index][0]
            .iter()
            .zip(&measured[index][1])
            .map(|(c, o)| c - o)
            .collect()
    };
    for (index, size) in sizes.iter().enumerate() {
        let [completing, other, save, rss] = &measured[index];
        let (c_lo, c_hi) = range(completing);
        let (s_lo, s_hi) = range(save);
        println!(
            "| {} | {:.1} ms | {c_lo:.1}–{c_hi:.1} ms | {:.1} ms | {:+.1} ms | {:.1} ms | {s_lo:.1}–{s_hi:.1} ms | {:.1} MiB |",
            human(*size),
            median(completing),
            median(other),
            median(&added(index)),
            median(save),
            range(rss).1,
        );
    }
    let (early, late) = write_latency(&args.dir, large)?;
    println!(
        "\nThe disk alone (std::fs, {} in 1 MiB writes, an fdatasync after each): a write \
         takes {early:.2} ms in the first 64 MiB and {late:.2} ms in the last 64 MiB (medians).",
        human(large)
    );
    println!(
        "\n{} ÷ {}: completing request {:.2}×, save {:.2}× (target ≤ 2×); a chunk request \
         of the larger upload {:.2}× one of the smaller",
        human(large),
        human(small),
        median(&measured[1][0]) / median(&measured[0][0]),
        median(&measured[1][2]) / median(&measured[0][2]),
        median(&measured[1][1]) / median(&measured[0][1]),
    );
    Ok(())
}

/// Medians of how long one 1 MiB `write` takes (each followed by an `fdatasync`, as the
/// server does per chunk) in the first and in the last 64 MiB of a `size` file: what a
/// chunk costs early and late in a large upload, without any server.
fn write_latency(dir: &std::path::Path, size: u64) -> Result<(f64, f64), String> {
    use std::{io::Write, time::Instant};
    let path = dir.join("write-latency.bin");
    let mut file = File::create(&path).map_err(|e| e.to_string())?;
    let block = vec![7u8; 1 << 20];
    let blocks = size >> 20;
    let (mut early, mut late) = (Vec::new(), Vec::new());
    for n in 0..blocks {
        let started = Instant::now();
        file.write_all(&block).map_err(|e| e.to_string())?;
        let took = started.elapsed().as_secs_f64() * 1e3;
        file.sync_data().map_err(|e| e.to_string())?;
        if n < 64 {
            early.push(took);
        } else if n + 64 >= blocks {
            late.push(took);
        }
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok((median(&early), median(&late)))
}
