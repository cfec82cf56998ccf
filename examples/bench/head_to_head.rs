//! The head-to-head table: one file size, 1 MiB chunks, 3 in flight, the HTTP sink, our
//! server in both bodies and both flush modes, and the peers when given, each run once per
//! round for `--repeat` rounds in a rotated order. Ratios are taken within a round (so a
//! slow minute of the machine hits both sides) and reported as medians over the rounds.

use crate::{
    Args,
    client::{self, Body, Outcome, Run},
    human, server_run,
    servers::{Flush, Server},
    stats::{median, range},
};
use std::{fs::File, sync::Arc};

/// One column of contenders: what runs, and what it is compared with.
enum Contender {
    Sink,
    Ours(Body, Flush),
    /// The example server of another build (`--baseline`), multipart.
    Baseline(Flush),
    Django(String),
    Rustus {
        url: String,
        flush: Flush,
    },
}

impl Contender {
    fn server(&self) -> &'static str {
        match self {
            Self::Sink => "HTTP sink (reads, discards)",
            Self::Ours(..) => "sea-orm-resumable",
            Self::Baseline(_) => "sea-orm-resumable, baseline build (--baseline)",
            Self::Django(_) => "django2-resumable 0.1.1 (gunicorn, 5 workers)",
            Self::Rustus { .. } => "rustus 0.5.10",
        }
    }

    fn protocol(&self) -> &'static str {
        match self {
            Self::Sink | Self::Django(_) | Self::Baseline(_) | Self::Ours(Body::Multipart, _) => {
                "resumable.js multipart"
            }
            Self::Ours(Body::Octet, _) => "resumable.js octet",
            Self::Rustus { .. } => "tus 1.0 (sequential PATCH)",
        }
    }

    /// Whether it flushes each chunk to the disk before answering; `None` for the sink.
    /// Django's file storage and django2-resumable never call fsync.
    fn flush(&self) -> Option<Flush> {
        match self {
            Self::Sink => None,
            Self::Ours(_, flush) | Self::Baseline(flush) | Self::Rustus { flush, .. } => {
                Some(*flush)
            }
            Self::Django(_) => Some(Flush::Never),
        }
    }

    fn is_peer(&self) -> bool {
        matches!(
            self,
            Self::Django(_) | Self::Rustus { .. } | Self::Baseline(_)
        )
    }
}

fn flush_name(flush: Option<Flush>) -> &'static str {
    match flush {
        None => "-",
        Some(Flush::EveryChunk) => "every chunk",
        Some(Flush::Never) => "never",
    }
}

/// Runs the rounds and prints the table and the targets.
pub async fn run(
    args: &Args,
    http: &reqwest::Client,
    sink: &Server,
    source: Arc<File>,
) -> Result<(), String> {
    let size = args.peer_size;
    let mut contenders = vec![
        Contender::Sink,
        Contender::Ours(Body::Multipart, Flush::EveryChunk),
        Contender::Ours(Body::Octet, Flush::EveryChunk),
        Contender::Ours(Body::Multipart, Flush::Never),
        Contender::Ours(Body::Octet, Flush::Never),
    ];
    if args.baseline.is_some() {
        contenders.push(Contender::Baseline(Flush::EveryChunk));
        contenders.push(Contender::Baseline(Flush::Never));
    }
    if let Some(url) = &args.django {
        contenders.push(Contender::Django(url.clone()));
    }
    if let Some(url) = &args.rustus {
        contenders.push(Contender::Rustus {
            url: url.clone(),
            flush: Flush::Never,
        });
    }
    if let Some(url) = &args.rustus_fsync {
        contenders.push(Contender::Rustus {
            url: url.clone(),
            flush: Flush::EveryChunk,
        });
    }
    let count = contenders.len();
    let mut rates = vec![Vec::new(); count];
    let mut on_disk = vec![Vec::new(); count];
    let mut completions = vec![Vec::new(); count];
    // CPU seconds per GiB: the server's (where we can see it) and the client's.
    let mut server_cpu = vec![Vec::new(); count];
    let mut client_cpu = vec![Vec::new(); count];
    let gib = size as f64 / (1u64 << 30) as f64;
    for round in 0..args.repeat {
        eprintln!("head to head: round {} of {}", round + 1, args.repeat);
        for i in 0..count {
            let index = (i + round) % count;
            let (outcome, cpu) = measure(
                args,
                http,
                sink,
                &contenders[index],
                source.clone(),
                &format!("{size}-h2h-{index}-{round}-{}", std::process::id()),
            )
            .await?;
            rates[index].push(outcome.mib_per_s());
            on_disk[index].push(outcome.on_disk_mib_per_s());
            completions[index].push(outcome.completions as f64);
            if let Some(cpu) = cpu {
                server_cpu[index].push(cpu / gib);
            }
            client_cpu[index].push(outcome.client_cpu_seconds / gib);
        }
    }
    // Per-round ratios: contender / sink, and ours (same body, same flush) / peer.
    let per_round = |a: usize, b: usize| -> Vec<f64> {
        rates[a].iter().zip(&rates[b]).map(|(x, y)| x / y).collect()
    };
    let on_disk_share = |a: usize| -> Vec<f64> {
        on_disk[a]
            .iter()
            .zip(&rates[0])
            .map(|(x, y)| x / y)
            .collect()
    };
    let ours = |body: Body, flush: Flush| {
        contenders
            .iter()
            .position(|c| matches!(c, Contender::Ours(b, f) if *b == body && *f == flush))
            .expect("ours is always in the table")
    };

    println!(
        "\nHead to head ({}, 1 MiB chunks, 3 in flight; {} rounds, each server once per \
         round in a rotated order; medians of per-round ratios):\n",
        human(size),
        args.repeat
    );
    println!(
        "| server | protocol | flushes | MiB/s median | MiB/s min–max | ÷ sink (median of per-round ratios) | ours multipart ÷ this (same flush mode) | ours octet ÷ this (same flush mode) | answers saying complete | server CPU s/GiB | client CPU s/GiB | MiB/s on disk (with a sync(2) after) | on disk ÷ sink |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (index, contender) in contenders.iter().enumerate() {
        let (lo, hi) = range(&rates[index]);
        let versus = |body| match (contender.is_peer(), contender.flush()) {
            (true, Some(flush)) => format!("{:.1}×", median(&per_round(ours(body, flush), index))),
            _ => "-".to_owned(),
        };
        let (fewest, most) = range(&completions[index]);
        println!(
            "| {} | {} | {} | {:.0} | {:.0}–{:.0} | {} | {} | {} | {} | {} | {:.2} | {:.0} | {} |",
            contender.server(),
            contender.protocol(),
            flush_name(contender.flush()),
            median(&rates[index]),
            lo,
            hi,
            match contender {
                Contender::Sink => "-".to_owned(),
                _ => format!("{:.0} %", 100.0 * median(&per_round(index, 0))),
            },
            versus(Body::Multipart),
            versus(Body::Octet),
            match contender {
                Contender::Sink => "-".to_owned(),
                _ if fewest == most => format!("{fewest:.0}"),
                _ => format!("{fewest:.0}–{most:.0}"),
            },
            if server_cpu[index].is_empty() {
                "-".to_owned()
            } else {
                format!("{:.2}", median(&server_cpu[index]))
            },
            median(&client_cpu[index]),
            median(&on_disk[index]),
            match contender {
                Contender::Sink => "-".to_owned(),
                _ => format!("{:.0} %", 100.0 * median(&on_disk_share(index))),
            },
        );
    }

    println!("\nTargets (medians of per-round ratios):\n");
    for flush in [Flush::EveryChunk, Flush::Never] {
        let share = |body| 100.0 * median(&per_round(ours(body, flush), 0));
        let on_disk = |body| 100.0 * median(&on_disk_share(ours(body, flush)));
        println!(
            "- ours ÷ sink, flush {}: multipart {:.0} %, octet {:.0} % (target ≥ 50 %); \
             counting the sync after: {:.0} %, {:.0} %",
            flush_name(Some(flush)),
            share(Body::Multipart),
            share(Body::Octet),
            on_disk(Body::Multipart),
            on_disk(Body::Octet),
        );
    }
    for (index, contender) in contenders.iter().enumerate() {
        if !contender.is_peer() {
            continue;
        }
        if let Contender::Baseline(flush) = contender {
            let cpu = |i: usize| median(&server_cpu[i]);
            println!(
                "- ours ÷ baseline build (flush {}, multipart): {:.2}× the throughput, {:.2}× \
                 the server CPU per GiB (≥ 1× and ≤ 1× is no regression)",
                flush_name(Some(*flush)),
                median(&per_round(ours(Body::Multipart, *flush), index)),
                cpu(ours(Body::Multipart, *flush)) / cpu(index),
            );
            continue;
        }
        let target = if matches!(contender, Contender::Django(_)) {
            15
        } else {
            2
        };
        for flush in [Flush::EveryChunk, Flush::Never] {
            let times = |body| median(&per_round(ours(body, flush), index));
            println!(
                "- ours (flush {}) ÷ {} (flush {}): multipart {:.1}×, octet {:.1}× (target ≥ {target}×)",
                flush_name(Some(flush)),
                contender.server(),
                flush_name(contender.flush()),
                times(Body::Multipart),
                times(Body::Octet),
            );
        }
    }
    Ok(())
}

/// One upload of `args.peer_size` bytes to `contender`.
async fn measure(
    args: &Args,
    http: &reqwest::Client,
    sink: &Server,
    contender: &Contender,
    source: Arc<File>,
    id: &str,
) -> Result<(Outcome, Option<f64>), String> {
    let size = args.peer_size;
    // Whatever earlier runs left in the page cache goes to the disk now, not during this
    // run (the media roots are deleted, but writeback may already be under way).
    let _ = std::process::Command::new("sync").status();
    let run = |url: &str, body| Run {
        url: url.to_owned(),
        body,
        chunk_size: 1 << 20,
        in_flight: 3,
    };
    match contender {
        Contender::Sink => {
            let before = sink.cpu_seconds();
            let mut outcome = client::upload(
                http,
                &run(&sink.endpoint, Body::Multipart),
                source,
                size,
                id,
            )
            .await?;
            let cpu = sink.cpu_seconds() - before;
            outcome.sync();
            Ok((outcome, Some(cpu)))
        }
        Contender::Ours(body, flush) => {
            let ours = server_run(
                http,
                &args.dir,
                &|url: &str| run(url, *body),
                source,
                size,
                id,
                *flush,
            )
            .await?;
            Ok((ours.outcome, Some(ours.cpu_seconds)))
        }
        Contender::Baseline(flush) => {
            let binary = args.baseline.as_deref().ok_or("no --baseline")?;
            let theirs = crate::server_run_of(
                http,
                (Some(binary), &args.dir),
                &|url: &str| run(url, Body::Multipart),
                source,
                size,
                id,
                *flush,
            )
            .await?;
            Ok((theirs.outcome, Some(theirs.cpu_seconds)))
        }
        // Their processes are not ours to watch (gunicorn forks workers).
        Contender::Django(url) => {
            let mut outcome =
                client::upload(http, &run(url, Body::Multipart), source, size, id).await?;
            outcome.sync();
            Ok((outcome, None))
        }
        Contender::Rustus { url, .. } => {
            let mut outcome = client::upload_tus(http, url, source, size, 1 << 20).await?;
            outcome.sync();
            Ok((outcome, None))
        }
    }
}
