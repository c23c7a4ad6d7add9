//! `blksnap`: the command-line tool for the blksnap module.
//!
//! Commands and their output follow the tool of the upstream blksnap
//! proposal, so scripts written for it run unchanged: every option has a long
//! and a short form, errors are one line on stderr with exit code 1.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Block-device snapshots and change-block tracking.
#[derive(Parser, Debug)]
#[command(name = "blksnap", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the version of the loaded module's interface as M.m.r.b.
    Version,
    /// Attach the blksnap filter to a block device.
    Attach(DeviceArgs),
    /// Detach the blksnap filter from a block device.
    Detach(DeviceArgs),
}

#[derive(clap::Args, Debug)]
struct DeviceArgs {
    /// Block device, e.g. /dev/sda1.
    #[arg(short, long, value_name = "DEVICE")]
    device: std::path::PathBuf,
}

fn run(cli: Cli) -> blksnap::Result<()> {
    match cli.command {
        Command::Version => {
            let v = blksnap::Control::open()?.version()?;
            println!("{}", blksnap::format_version(&v));
        }
        Command::Attach(args) => match blksnap::BlockDevice::open(&args.device)?.attach()? {
            blksnap::Attached::Now => println!("Attached successfully"),
            blksnap::Attached::Already => println!("Already was attached"),
        },
        Command::Detach(args) => blksnap::BlockDevice::open(&args.device)?.detach()?,
    }
    Ok(())
}

/// Parses the command line; help and version go to stdout with status 0,
/// a usage error becomes one line on stderr and status 1.
fn parse() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|err| {
        if err.use_stderr() {
            let text = err.render().to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("blksnap: {}", line.trim_start_matches("error: "));
            ExitCode::FAILURE
        } else {
            let _ = err.print();
            ExitCode::SUCCESS
        }
    })
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("blksnap: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn unknown_command_is_an_error() {
        let err = Cli::try_parse_from(["blksnap", "frobnicate"]).unwrap_err();
        assert!(err.use_stderr());
    }

    #[test]
    fn device_option_forms() {
        for args in [
            &["blksnap", "attach", "--device", "/dev/loop0"][..],
            &["blksnap", "attach", "--device=/dev/loop0"],
            &["blksnap", "attach", "-d", "/dev/loop0"],
            &["blksnap", "attach", "-d/dev/loop0"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            match cli.command {
                Command::Attach(a) => assert_eq!(a.device.to_str(), Some("/dev/loop0")),
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        assert!(Cli::try_parse_from(["blksnap", "detach"]).is_err());
    }

    #[test]
    fn version_parses() {
        let cli = Cli::try_parse_from(["blksnap", "version"]).unwrap();
        assert!(matches!(cli.command, Command::Version));
    }
}
