//! `blksnap-gen DIR`: writes the man page and the shell completions of
//! `blksnap` to `DIR`.
//!
//! Both are generated from the clap definitions the tool parses with
//! ([`blksnap::args::command`]), so they cannot drift from it. `DIR` gets
//! `blksnap.8`, `blksnap.bash`, `_blksnap` (zsh) and `blksnap.fish`; the
//! written paths are printed one per line. `cli/install.sh` runs this and
//! installs the files under their standard names.
//!
//! The man page is one page for the whole tool: clap_mangen renders the
//! title, synopsis, description and global options of `blksnap`, and, under
//! COMMANDS, the synopsis, description and options of each command (instead
//! of clap_mangen's list of `blksnap-COMMAND(8)` pages, which would be one
//! page per command).

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use clap_complete::Shell;
use clap_mangen::Man;
use roff::{roman, Roff};

/// Writes the man page and shell completions of blksnap to a directory.
#[derive(Parser, Debug)]
#[command(name = "blksnap-gen", version)]
struct Gen {
    /// Directory to write blksnap.8, blksnap.bash, _blksnap and blksnap.fish
    /// to; created if missing.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// Name of the tool, of its man page and of its completion files.
const NAME: &str = "blksnap";

/// The `blksnap` command as documented: without the `help` subcommand,
/// which is an alias of `--help`, and built, so that every subcommand knows
/// its full name and carries the global options.
fn documented_command() -> clap::Command {
    let mut cmd = blksnap::args::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Renders one piece of a page with `render` and returns its roff text
/// without roff's preamble (the `Aq` string definitions, which the page
/// writes once at its top) and, if `headings` is false, without its `.SH`
/// lines.
fn piece(
    render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    headings: bool,
) -> io::Result<String> {
    let mut buf = Vec::new();
    render(&mut buf)?;
    let text = String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with(".ie \\n(.g .ds Aq") && !l.starts_with(".el .ds Aq"))
        .filter(|l| headings || !l.starts_with(".SH"))
        .flat_map(|l| [l, "\n"])
        .collect())
}

/// Renders the man page of `cmd` (a [`documented_command`]), in section 8.
fn man_page(cmd: &clap::Command) -> io::Result<String> {
    let page = |c: &clap::Command| {
        Man::new(c.clone())
            .section("8")
            .manual("System Manager's Manual")
    };
    let top = page(cmd);
    // The preamble once, then the title and the sections of the tool.
    let mut out = Roff::new().render();
    out += &piece(|w| top.render_title(w), true)?;
    out += &piece(|w| top.render_name_section(w), true)?;
    out += &piece(|w| top.render_synopsis_section(w), true)?;
    out += &piece(|w| top.render_description_section(w), true)?;
    out += &piece(|w| top.render_options_section(w), true)?;

    out += &Roff::new().control("SH", ["COMMANDS"]).to_roff();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // The global options and -h are described once, above.
        let mut sub = sub.clone();
        let described: Vec<_> = sub
            .get_arguments()
            .filter(|a| a.is_global_set() || a.get_id() == "help")
            .map(|a| a.get_id().clone())
            .collect();
        for id in described {
            sub = sub.mut_arg(id, |a| a.hide(true));
        }
        let man = page(&sub);
        out += &Roff::new().control("SS", [sub.get_name()]).to_roff();
        out += &piece(|w| man.render_synopsis_section(w), false)?;
        out += &Roff::new().control("PP", []).to_roff();
        out += &piece(|w| man.render_description_section(w), false)?;
        out += &piece(|w| man.render_options_section(w), false)?;
    }

    let mut tail = Roff::new();
    tail.control("SH", ["EXIT STATUS"])
        .text([roman(
            "0 on success; 1 on any error, which is reported as one line on \
             standard error.",
        )])
        .control("SH", ["FILES"])
        .text([roman(blksnap::CONTROL_PATH)])
        .control("RS", [])
        .text([roman(
            "The control device of the blksnap module, present while the \
             module is loaded.",
        )])
        .control("RE", []);
    out += &tail.to_roff();
    out += &piece(|w| top.render_version_section(w), true)?;
    Ok(out)
}

/// Writes the man page and the completions for bash, zsh and fish to `dir`,
/// creating it if needed; returns the paths written.
fn generate(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = documented_command();
    let man = dir.join(format!("{NAME}.8"));
    std::fs::write(&man, man_page(&cmd)?)?;
    let mut written = vec![man];
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        written.push(clap_complete::generate_to(shell, &mut cmd, NAME, dir)?);
    }
    Ok(written)
}

fn main() -> ExitCode {
    let args = Gen::parse();
    match generate(&args.dir) {
        Ok(paths) => {
            for path in paths {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("blksnap-gen: cannot write to {}: {err}", args.dir.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_lose_the_preamble_and_optionally_headings() {
        let cmd = documented_command();
        let man = Man::new(cmd);
        let with = piece(|w| man.render_name_section(w), true).unwrap();
        assert!(with.starts_with(".SH NAME\n"), "{with}");
        let without = piece(|w| man.render_name_section(w), false).unwrap();
        assert!(!without.contains(".SH") && !without.contains(".ds Aq"));
        assert!(without.starts_with("blksnap \\- "), "{without}");
    }

    #[test]
    fn man_page_documents_every_command_once() {
        let cmd = documented_command();
        let page = man_page(&cmd).unwrap();
        assert_eq!(page.matches(".ds Aq").count(), 2, "one preamble");
        assert!(page.contains(".TH blksnap 8 "), "{page}");
        let (_, commands) = page.split_once(".SH COMMANDS\n").unwrap();
        assert!(!commands.contains("\\fB\\-\\-json\\fR"), "{commands}");
        assert!(!commands.contains("\\fB\\-\\-help\\fR"), "{commands}");
        for sub in cmd.get_subcommands() {
            let name = sub.get_name();
            assert!(page.contains(&format!(".SS {name}\n")), "{name}");
            assert!(page.contains(&format!("\\fBblksnap {name}\\fR")), "{name}");
        }
        assert!(!page.contains(".SS help\n"));
        assert!(
            page.contains("\\fB\\-r\\fR, \\fB\\-\\-ranges\\fR"),
            "{page}"
        );
    }
}
