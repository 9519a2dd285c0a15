//! The man pages and shell completions, generated from the clap definitions in [`crate::cli`]
//! so that they can never drift from `--help`: one page per command (`bucardo-bootstrap.1`,
//! `bucardo-bootstrap-run.1`, ...) and completions for bash, zsh and fish. The hidden
//! `generate` subcommand writes them; the Debian package ships them. That subcommand is not
//! part of [`crate::cli::Cli`], so that neither the pages nor the completions list it.
//!
//! A command's `after_help` is made of sections, each a header line ending in `:` (`Examples:`,
//! `Environment:`) followed by indented lines. A man page renders each as a section of its
//! own (`EXAMPLES`, `ENVIRONMENT`) and keeps the lines as they are, so that the commands in
//! them can be copied.

use clap::{value_parser, Arg, ArgMatches, Command};
use clap_complete::Shell;
use std::io;
use std::path::{Path, PathBuf};

/// `generate man|completions DIR`, hidden from `--help`.
pub fn generate_subcommand() -> Command {
    Command::new("generate")
        .hide(true)
        .about("Write the man pages or the shell completions into a directory: what the Debian package installs.")
        .arg(
            Arg::new("what")
                .required(true)
                .value_parser(["man", "completions"])
                .help("man: a page for the tool and one per subcommand; completions: bash, zsh and fish"),
        )
        .arg(
            Arg::new("dir")
                .required(true)
                .value_parser(value_parser!(PathBuf))
                .help("The directory to write into, created if missing"),
        )
        .after_help("Examples:\n  bucardo-bootstrap generate man target/man\n  bucardo-bootstrap generate completions target/completions")
}

/// Carries out `generate` (its matches `m`) for `cli`, the command line the files describe;
/// returns the files written.
pub fn generate(cli: Command, m: &ArgMatches) -> io::Result<Vec<PathBuf>> {
    let dir = m.get_one::<PathBuf>("dir").expect("required");
    match m.get_one::<String>("what").map(String::as_str) {
        Some("man") => write_man_pages(cli, dir),
        _ => write_completions(cli, dir),
    }
}

/// Writes a man page for `cmd` and for each of its visible subcommands into `dir`, and returns
/// their paths. `cmd` carries the version the pages show.
pub fn write_man_pages(cmd: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![(cmd.clone(), None)];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push((sub.clone(), Some(cmd.get_name().to_string())));
    }
    // The footer has room for the version without the commit, which the VERSION section shows.
    let version = cmd.get_version().unwrap_or_default();
    let source = format!(
        "{} {}",
        cmd.get_name(),
        version.split_whitespace().next().unwrap_or_default()
    );
    let mut written = Vec::new();
    for (page, parent) in pages {
        let man = clap_mangen::Man::new(page.clone()).source(source.trim());
        let path = dir.join(man.get_filename());
        std::fs::write(&path, man_page(&man, &page, parent.as_deref())?)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes the bash, zsh and fish completions for `cmd` into `dir`, and returns their paths.
pub fn write_completions(mut cmd: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let name = cmd.get_name().to_string();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| clap_complete::generate_to(shell, &mut cmd, &name, dir))
        .collect()
}

fn man_page(man: &clap_mangen::Man, cmd: &Command, parent: Option<&str>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        for (header, lines) in sections(&after.to_string()) {
            out.extend_from_slice(format!(".SH {}\n.nf\n", header.to_uppercase()).as_bytes());
            for line in lines {
                out.extend_from_slice(roff_line(line).as_bytes());
                out.push(b'\n');
            }
            out.extend_from_slice(b".fi\n");
        }
    }
    if let Some(parent) = parent {
        out.extend_from_slice(format!(".SH \"SEE ALSO\"\n\\fB{parent}\\fR(1)\n").as_bytes());
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    Ok(out)
}

/// `after_help` split into (header, lines): a header is a line that ends in `:` and does not
/// start with a space; the lines under it lose their common two-space indent.
fn sections(text: &str) -> Vec<(&str, Vec<&str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        match (line.strip_suffix(':'), out.last_mut()) {
            (Some(header), _) if !line.starts_with(' ') => out.push((header, Vec::new())),
            (_, Some((_, lines))) => lines.push(line.strip_prefix("  ").unwrap_or(line)),
            (_, None) => out.push(("Notes", vec![line])),
        }
    }
    for (_, lines) in &mut out {
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
    }
    out
}

/// One line of text for a no-fill block: backslashes, a leading control character, and the
/// characters groff would typeset as typographic ones (hyphens, quotes) escaped, so that a
/// command copied from the rendered page runs.
fn roff_line(line: &str) -> String {
    let mut s = String::with_capacity(line.len() + 8);
    if line.starts_with(['.', '\'']) {
        s.push_str("\\&");
    }
    for c in line.chars() {
        match c {
            '\\' => s.push_str("\\e"),
            '-' => s.push_str("\\-"),
            '\'' => s.push_str("\\(aq"),
            '`' => s.push_str("\\(ga"),
            '~' => s.push_str("\\(ti"),
            '^' => s.push_str("\\(ha"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_help_sections_become_man_sections_with_their_lines_kept() {
        let text = "Environment:\n  PGHOST  HERE's host\n\nExamples:\n  First:\n    tool --a 'x'\n";
        let s = sections(text);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0], ("Environment", vec!["PGHOST  HERE's host"]));
        assert_eq!(s[1], ("Examples", vec!["First:", "  tool --a 'x'"]));
    }

    #[test]
    fn a_copied_example_keeps_its_ascii_dashes_and_quotes() {
        assert_eq!(
            roff_line(".x --tables 'a' ~/f \\n"),
            "\\&.x \\-\\-tables \\(aqa\\(aq \\(ti/f \\en"
        );
    }
}
