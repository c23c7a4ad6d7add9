//! `racer`: seeded, bounded races against the blksnap module for the VM
//! tests. See the library's documentation.
//!
//! Exit status: 0 when every check passed, 1 when one failed (the `FAIL`
//! lines say which) or on an error (one line on stderr), 2 on a usage
//! error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use racer::member::Pattern;
use racer::reader::{read_loop, Counts, End, Expect};
use racer::report::Failures;
use racer::{add_detach, rounds};
use tagblk::parse_size;

/// Seeded, bounded races of writers, image readers and snapshot ioctls.
#[derive(Parser, Debug)]
#[command(name = "racer", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PatternArg {
    /// Random blocks.
    Random,
    /// A block of each chunk not yet written in the round, then random.
    Fresh,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Rounds of create, add, take, image reads and destroy on members
    /// written all along; fills the members with generation 1 first.
    Rounds {
        /// A member device (repeat for more).
        #[arg(long = "member", required = true)]
        members: Vec<PathBuf>,
        /// A difference storage (repeat: used in turn, one per round).
        #[arg(long = "storage", required = true)]
        storages: Vec<PathBuf>,
        /// Storage limit of each snapshot, bytes (K, M, G suffixes).
        #[arg(long, value_parser = parse_size)]
        limit: u64,
        #[arg(long, default_value_t = 4)]
        rounds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Writer threads per member.
        #[arg(long, default_value_t = 2)]
        writers: u64,
        /// Reader threads per image.
        #[arg(long, default_value_t = 1)]
        readers: u64,
        #[arg(long, value_enum, default_value_t = PatternArg::Random)]
        pattern: PatternArg,
        /// The chunk of the fresh pattern, bytes.
        #[arg(long, default_value = "256K", value_parser = parse_size)]
        chunk: u64,
        /// Every other read is of the block written last.
        #[arg(long)]
        follow: bool,
        /// Destroy once every reader did this many reads...
        #[arg(long, default_value_t = 64)]
        reads_before_destroy: u64,
        /// ...and the writers of every member this many writes.
        #[arg(long, default_value_t = 64)]
        writes_before_destroy: u64,
        /// Detach (EBUSY) and attach (EALREADY) attempts per member while
        /// the snapshot is taken.
        #[arg(long, default_value_t = 0)]
        pokes: u64,
        /// A detach races the SNAPSHOTADD of one member each round.
        #[arg(long)]
        race_add: bool,
        /// A member is detached and attached again after every other round.
        #[arg(long)]
        reattach: bool,
    },
    /// Rounds of SNAPSHOTADD racing BLKFILTER_DETACH on one device.
    AddDetach {
        dev: PathBuf,
        /// Difference storage of the (never taken) snapshots.
        #[arg(long)]
        storage: PathBuf,
        #[arg(long, default_value_t = 200)]
        rounds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The largest delay of one of the two, in spin-loop turns.
        #[arg(long, default_value_t = 20000)]
        spin: u64,
        /// Meanwhile take and destroy snapshots of this device in a loop
        /// (it holds the snapshots' lock that SNAPSHOTADD waits for).
        #[arg(long)]
        contend: Option<PathBuf>,
    },
    /// Reads an image at random places until told to stop or it goes away;
    /// every block read must be generation GEN. Prints `started` after the
    /// first read, then `reads=N eio=N bad_reads=N gone=N end=E`.
    Read {
        image: PathBuf,
        #[arg(long)]
        gen: u64,
        /// Stop when this file exists.
        #[arg(long)]
        stop_file: Option<PathBuf>,
        /// Stop after this many seconds in any case.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn read(image: PathBuf, gen: u64, stop_file: Option<PathBuf>, seconds: u64, seed: u64) -> bool {
    let failures = Failures::new();
    let counts = Counts::default();
    let until = Instant::now() + Duration::from_secs(seconds);
    let stop = || {
        if counts.reads.load(Ordering::Relaxed) == 1 {
            println!("started");
        }
        Instant::now() >= until || stop_file.as_ref().is_some_and(|f| f.exists())
    };
    let end = read_loop(
        &image,
        Expect::Gen(gen),
        None,
        seed,
        "reader",
        &stop,
        &counts,
        &failures,
    );
    let end = match end {
        End::Stopped => "stopped",
        End::Gone => "gone",
        End::Error => "error",
    };
    println!("{} end={end}", counts.summary());
    println!("{}", failures.summary());
    failures.is_empty()
}

fn run(cli: Cli) -> Result<bool, String> {
    match cli.command {
        Command::Rounds {
            members,
            storages,
            limit,
            rounds,
            seed,
            writers,
            readers,
            pattern,
            chunk,
            follow,
            reads_before_destroy,
            writes_before_destroy,
            pokes,
            race_add,
            reattach,
        } => rounds::run(&rounds::Plan {
            members,
            storages,
            limit_sectors: limit / 512,
            rounds,
            seed,
            writers: writers.max(1),
            pattern: match pattern {
                PatternArg::Random => Pattern::Random,
                PatternArg::Fresh => Pattern::FreshChunks((chunk / 4096).max(1)),
            },
            readers,
            follow,
            reads_before_destroy,
            writes_before_destroy,
            pokes,
            race_add,
            reattach,
        }),
        Command::AddDetach {
            dev,
            storage,
            rounds,
            seed,
            spin,
            contend,
        } => add_detach::run(&add_detach::Plan {
            dev,
            storage,
            rounds,
            seed,
            spin,
            contend,
        }),
        Command::Read {
            image,
            gen,
            stop_file,
            seconds,
            seed,
        } => Ok(read(image, gen, stop_file, seconds, seed)),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("racer: {e}");
            ExitCode::FAILURE
        }
    }
}
