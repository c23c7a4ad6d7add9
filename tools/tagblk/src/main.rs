//! `tagblk`: writes and checks tagged blocks on block devices, for the
//! blksnap tests. See the library's documentation for the block format.
//!
//! Exit status: 0 when the command did what it should and every check
//! passed, 1 on a mismatch or an error (one line on stderr), 2 on a usage
//! error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tagblk::order::Order;
use tagblk::tag::WriteOptions;
use tagblk::{parse_size, seq, tag};

/// Write and verify tagged 4 KiB blocks on block devices.
///
/// Every block written carries its byte offset, a generation number, a magic
/// and a checksum, so that `verify` can tell for each block whether it holds
/// exactly what the given generation wrote there. I/O is direct (O_DIRECT)
/// where the file allows it. Offsets and lengths are bytes, multiples of
/// 4096, with an optional K, M, G suffix.
#[derive(Parser, Debug)]
#[command(name = "tagblk", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write generation N into every block of the range.
    Write(WriteArgs),
    /// Check that every block of the range holds generation N's block for
    /// its offset; list the first mismatches and count them (exit 1).
    Verify(VerifyArgs),
    /// Write records 0..COUNT alternately to two devices (record k to
    /// device k % 2, block k / 2), one write at a time.
    Seq(SeqArgs),
    /// Check that two images of the devices `seq` wrote hold exactly the
    /// records 0..K for one K, i.e. were cut at one moment; prints
    /// `records=K`.
    Seqcheck(SeqcheckArgs),
}

#[derive(Args, Debug)]
struct RangeArgs {
    /// Start of the range, bytes.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    offset: u64,
    /// Length of the range, bytes [default: to the end of the device].
    #[arg(long, value_parser = parse_size)]
    len: Option<u64>,
}

#[derive(Args, Debug)]
struct WriteArgs {
    /// Block device or regular file.
    device: PathBuf,
    /// Generation number written into the blocks.
    #[arg(long)]
    gen: u64,
    #[command(flatten)]
    range: RangeArgs,
    /// Number of concurrent writer threads.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    /// Seed of the random order: the same seed, jobs and range give the
    /// same per-thread order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How blocks are spread over the threads: random (a seeded
    /// permutation, one block per write), interleaved (thread t writes
    /// blocks t, t+J, ...), seq (256 KiB runs, fastest).
    #[arg(long, value_enum, default_value_t = Order::Random)]
    order: Order,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// Block device or regular file.
    device: PathBuf,
    /// The generation every block should carry.
    #[arg(long)]
    gen: u64,
    #[command(flatten)]
    range: RangeArgs,
    /// How many mismatches to list.
    #[arg(long, default_value_t = 10)]
    max_report: usize,
}

#[derive(Args, Debug)]
struct SeqArgs {
    /// Device of the even records.
    dev1: PathBuf,
    /// Device of the odd records.
    dev2: PathBuf,
    /// Number of records.
    #[arg(long)]
    count: u64,
}

#[derive(Args, Debug)]
struct SeqcheckArgs {
    /// Image of the device of the even records.
    img1: PathBuf,
    /// Image of the device of the odd records.
    img2: PathBuf,
    /// How many problems to list.
    #[arg(long, default_value_t = 10)]
    max_report: usize,
}

/// Runs the command; `Ok(false)` when a check failed.
fn run(cli: Cli) -> tagblk::Result<bool> {
    match cli.command {
        Command::Write(a) => {
            let opts = WriteOptions {
                gen: a.gen,
                offset: a.range.offset,
                len: a.range.len,
                jobs: usize::from(a.jobs),
                order: a.order,
                seed: a.seed,
            };
            let w = tag::write(&a.device, &opts)?;
            if !w.direct {
                eprintln!(
                    "tagblk: {} refuses O_DIRECT; buffered writes were used",
                    a.device.display()
                );
            }
            println!(
                "wrote generation {} to {}: {} blocks from offset {}, {} jobs, {} order, seed {}",
                a.gen,
                a.device.display(),
                w.range.blocks(),
                w.range.offset,
                a.jobs,
                a.order.name(),
                a.seed
            );
            Ok(true)
        }
        Command::Verify(a) => {
            let r = tag::verify(&a.device, a.gen, a.range.offset, a.range.len, a.max_report)?;
            if r.mismatched == 0 {
                println!(
                    "verified {}: {} blocks of generation {} from offset {}",
                    a.device.display(),
                    r.blocks,
                    a.gen,
                    a.range.offset
                );
                return Ok(true);
            }
            for m in &r.first {
                println!("{m}");
            }
            let kinds: Vec<String> = r.by_kind.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            println!(
                "{}: {} of {} blocks mismatched ({})",
                a.device.display(),
                r.mismatched,
                r.blocks,
                kinds.join(", ")
            );
            Ok(false)
        }
        Command::Seq(a) => {
            seq::seq([&a.dev1, &a.dev2], a.count)?;
            println!(
                "wrote records 0..{} to {} and {}",
                a.count,
                a.dev1.display(),
                a.dev2.display()
            );
            Ok(true)
        }
        Command::Seqcheck(a) => {
            let r = seq::seqcheck([&a.img1, &a.img2], a.max_report)?;
            if r.is_prefix() {
                println!("records={}", r.present);
                return Ok(true);
            }
            for p in &r.problems {
                println!("{p}");
            }
            println!(
                "not one cut: {} records present, highest {}, {} missing below it, {} bad blocks",
                r.present,
                r.highest.map_or("none".to_string(), |h| h.to_string()),
                r.missing,
                r.bad
            );
            Ok(false)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tagblk: {e}");
            ExitCode::FAILURE
        }
    }
}
