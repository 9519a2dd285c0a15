//! The Debian package: assembled with `dpkg-deb --build` from `[package.metadata.deb]` in the
//! repository's Cargo.toml and a built binary. The binary writes its own man pages and shell
//! completions (its hidden `generate` subcommand), `dpkg-shlibdeps` turns `$auto` in `depends`
//! into the shared libraries it links, and `strip`, `gzip` and `md5sum` do what dh would.
//!
//! `cargo xtask deb` runs it on the release build; tests/package.rs runs this same code on the
//! test suite's debug binary. It needs dpkg-dev (dpkg-shlibdeps, and binutils for strip), and
//! nothing from crates.io but `toml`.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What to package, and where the package goes.
pub struct Options {
    /// The repository: Cargo.toml, and the assets' sources.
    pub root: PathBuf,
    /// The binary to ship as `$bin`.
    pub binary: PathBuf,
    /// Where the `.deb` is written (created if missing).
    pub out_dir: PathBuf,
}

/// A package built.
pub struct Package {
    pub path: PathBuf,
    /// The control file, as in the package.
    pub control: String,
}

/// Builds the package and returns where it is. The staging tree, in `out_dir`, is removed.
pub fn build(o: &Options) -> Result<Package, String> {
    let meta = Metadata::read(&o.root.join("Cargo.toml"))?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let version = format!("{}-{}", meta.version, meta.revision);
    let file_name = format!("{}_{version}_{arch}.deb", meta.name);
    fs::create_dir_all(&o.out_dir).map_err(|e| format!("{}: {e}", o.out_dir.display()))?;
    let work = o.out_dir.join(format!(".{file_name}.work"));
    let _cleanup = RemoveOnDrop(work.clone());
    let _ = fs::remove_dir_all(&work);
    let (tree, generated) = (work.join("tree"), work.join("generated"));
    for what in ["man", "completions"] {
        let dir = generated.join(what);
        run(Command::new(&o.binary).arg("generate").arg(what).arg(&dir))?;
    }
    let mut executables = Vec::new();
    for asset in &meta.assets {
        for (source, dest) in asset.files(&o.root, &o.binary, &generated)? {
            let target = tree.join(&dest);
            make_dirs(&tree, target.parent().expect("a file in the tree"))?;
            fs::copy(&source, &target).map_err(|e| format!("{}: {e}", source.display()))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(asset.mode))
                .map_err(|e| format!("{}: {e}", target.display()))?;
            if asset.mode & 0o111 != 0 {
                run(Command::new("strip")
                    .args(["--strip-unneeded", "--remove-section=.comment"])
                    .arg("--remove-section=.note")
                    .arg(&target))?;
                executables.push(target.clone());
            }
            let doc = dest.starts_with("usr/share/doc/")
                && fs::metadata(&target).map(|m| m.len()).unwrap_or(0) > 4096
                && !dest.ends_with("copyright");
            if dest.starts_with("usr/share/man/") || doc {
                run(Command::new("gzip").args(["-9n"]).arg(&target))?;
            }
        }
    }
    let depends = meta
        .depends
        .replace("$auto", &shlib_depends(&work, &executables)?);
    let mut control = String::new();
    let mut field = |name: &str, value: &str| {
        if !value.is_empty() {
            let _ = writeln!(control, "{name}: {value}");
        }
    };
    field("Package", &meta.name);
    field("Version", &version);
    field("Architecture", &arch);
    field("Maintainer", &meta.maintainer);
    field("Installed-Size", &installed_size_kib(&tree)?.to_string());
    field("Depends", &depends);
    field("Recommends", &meta.recommends);
    field("Suggests", &meta.suggests);
    field("Section", &meta.section);
    field("Priority", &meta.priority);
    field("Homepage", &meta.homepage);
    field("Description", &meta.synopsis);
    for line in meta.extended_description.trim().lines() {
        match line.trim_end() {
            "" => control.push_str(" .\n"),
            l => {
                let _ = writeln!(control, " {l}");
            }
        }
    }
    let debian = tree.join("DEBIAN");
    make_dirs(&tree, &debian)?;
    write(&debian.join("control"), &control)?;
    write(&debian.join("md5sums"), &md5sums(&tree)?)?;
    let path = o.out_dir.join(&file_name);
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&tree)
        .arg(&path))?;
    Ok(Package { path, control })
}

/// `[package]` and `[package.metadata.deb]`, as the package needs them.
struct Metadata {
    name: String,
    version: String,
    revision: String,
    maintainer: String,
    homepage: String,
    section: String,
    priority: String,
    synopsis: String,
    extended_description: String,
    depends: String,
    recommends: String,
    suggests: String,
    assets: Vec<Asset>,
}

impl Metadata {
    fn read(manifest: &Path) -> Result<Metadata, String> {
        let text =
            fs::read_to_string(manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
        let doc: toml::Table = text
            .parse()
            .map_err(|e| format!("{}: {e}", manifest.display()))?;
        let package = doc.get("package").and_then(|p| p.as_table());
        let deb = package
            .and_then(|p| p.get("metadata"))
            .and_then(|m| m.get("deb"))
            .and_then(|d| d.as_table())
            .ok_or("Cargo.toml has no [package.metadata.deb]")?;
        let get = |t: Option<&toml::Table>, key: &str| {
            t.and_then(|t| t.get(key))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let need = |t: Option<&toml::Table>, key: &str| {
            Some(get(t, key))
                .filter(|v| !v.is_empty())
                .ok_or(format!("Cargo.toml: `{key}` is missing"))
        };
        let deb = Some(deb);
        let assets = deb
            .and_then(|d| d.get("assets"))
            .and_then(|a| a.as_array())
            .ok_or("Cargo.toml: [package.metadata.deb] has no assets")?
            .iter()
            .map(Asset::parse)
            .collect::<Result<_, _>>()?;
        Ok(Metadata {
            name: need(package, "name")?,
            version: need(package, "version")?,
            revision: Some(get(deb, "revision"))
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "1".into()),
            maintainer: need(deb, "maintainer")?,
            homepage: get(package, "homepage"),
            section: get(deb, "section"),
            priority: get(deb, "priority"),
            synopsis: need(deb, "synopsis")?,
            extended_description: get(deb, "extended-description"),
            depends: get(deb, "depends"),
            recommends: get(deb, "recommends"),
            suggests: get(deb, "suggests"),
            assets,
        })
    }
}

/// One `[source, destination, mode]` of `assets`.
struct Asset {
    source: String,
    dest: String,
    mode: u32,
}

impl Asset {
    fn parse(v: &toml::Value) -> Result<Asset, String> {
        let bad = || format!("Cargo.toml: asset {v} is not [source, destination, mode]");
        let a = v.as_array().filter(|a| a.len() == 3).ok_or_else(bad)?;
        let s = |i: usize| a[i].as_str().map(str::to_string).ok_or_else(bad);
        Ok(Asset {
            source: s(0)?,
            dest: s(1)?.trim_start_matches('/').to_string(),
            mode: u32::from_str_radix(&s(2)?, 8).map_err(|_| bad())?,
        })
    }

    /// (source file, destination in the tree) for each file the asset names. A `*` in the
    /// source's last component matches any run of characters; a pattern must match something.
    fn files(
        &self,
        root: &Path,
        binary: &Path,
        generated: &Path,
    ) -> Result<Vec<(PathBuf, String)>, String> {
        let source = if self.source == "$bin" {
            binary.to_path_buf()
        } else if let Some(rest) = self.source.strip_prefix("$generated/") {
            generated.join(rest)
        } else {
            root.join(&self.source)
        };
        let sources = match source.file_name().and_then(|n| n.to_str()) {
            Some(pattern) if pattern.contains('*') => {
                let dir = source.parent().expect("a pattern in a directory");
                let mut found: Vec<PathBuf> = fs::read_dir(dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?
                    .flatten()
                    .filter(|e| glob(pattern, &e.file_name().to_string_lossy()))
                    .map(|e| e.path())
                    .collect();
                found.sort();
                found
            }
            _ => vec![source],
        };
        if sources.is_empty() || !sources.iter().all(|s| s.is_file()) {
            return Err(format!("asset {}: no such file", self.source));
        }
        Ok(sources
            .into_iter()
            .map(|s| {
                let dest = match self.dest.ends_with('/') {
                    true => format!("{}{}", self.dest, s.file_name().unwrap().to_string_lossy()),
                    false => self.dest.clone(),
                };
                (s, dest)
            })
            .collect())
    }
}

fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.len() >= head.len()
                && name.starts_with(head)
                && (0..=name.len() - head.len()).any(|i| {
                    name.is_char_boundary(head.len() + i) && glob(tail, &name[head.len() + i..])
                })
        }
    }
}

/// `$auto`: the packages of the shared libraries that `executables` link, with their
/// versions (`dpkg-shlibdeps`, which wants a debian/control to read).
fn shlib_depends(work: &Path, executables: &[PathBuf]) -> Result<String, String> {
    if executables.is_empty() {
        return Ok(String::new());
    }
    let dir = work.join("shlibdeps");
    fs::create_dir_all(dir.join("debian")).map_err(|e| e.to_string())?;
    write(
        &dir.join("debian/control"),
        "Source: x\n\nPackage: x\nArchitecture: any\n",
    )?;
    let mut cmd = Command::new("dpkg-shlibdeps");
    cmd.current_dir(&dir).args(["-O", "--warnings=0"]);
    for e in executables {
        cmd.arg(format!("-e{}", e.display()));
    }
    let out = output(&mut cmd)?;
    out.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_string)
        .ok_or(format!("dpkg-shlibdeps printed no shlibs:Depends: {out}"))
}

/// As dpkg counts it: each file's size in KiB rounded up, and 1 for each directory.
fn installed_size_kib(tree: &Path) -> Result<u64, String> {
    let mut kib = 0;
    for entry in fs::read_dir(tree).map_err(|e| e.to_string())?.flatten() {
        let m = entry.metadata().map_err(|e| e.to_string())?;
        kib += match m.is_dir() {
            true => 1 + installed_size_kib(&entry.path())?,
            false => m.len().div_ceil(1024),
        };
    }
    Ok(kib)
}

/// DEBIAN/md5sums: every file of the tree but DEBIAN/, by path relative to the root.
fn md5sums(tree: &Path) -> Result<String, String> {
    let mut files = Vec::new();
    collect_files(tree, tree, &mut files)?;
    files.retain(|f| !f.starts_with("DEBIAN/"));
    files.sort();
    if files.is_empty() {
        return Ok(String::new());
    }
    output(Command::new("md5sum").current_dir(tree).args(&files)).map(|s| s + "\n")
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), String> {
    for entry in fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).expect("under root");
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// Creates `dir` and its parents up to `tree`, each 0755 whatever the umask.
fn make_dirs(tree: &Path, dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut d = Some(dir);
    while let Some(p) = d.filter(|p| p.starts_with(tree)) {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", p.display()))?;
        d = p.parent();
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    output(cmd).map(|_| ())
}

/// The command's stdout, trimmed; its stderr in the error when it fails or cannot start.
fn output(cmd: &mut Command) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn a_star_matches_any_run_of_characters() {
        assert!(glob("*.1", "bucardo-bootstrap-run.1"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("*.1", "bucardo-bootstrap.bash"));
        assert!(!glob("a*b", "ba"));
    }
}
