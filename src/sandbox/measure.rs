//! Runs a program to the end and reads its peak resident set size from the kernel's own
//! accounting (`wait4`'s `ru_maxrss`), for the memory test and the copy benchmark: the figure is
//! the real binary's, whole, and needs no cooperation from it.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};

/// Runs `cmd` with its stdout and stderr captured; returns its output and its peak RSS in kB.
pub fn output_with_peak_rss(cmd: &mut Command) -> std::io::Result<(Output, u64)> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let (status, peak_kb) = wait_with_peak_rss(&mut child)?;
    let output = Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    Ok((output, peak_kb))
}

/// Waits for `child` (spawned, not yet waited for) and returns its exit status and peak RSS in
/// kB; its pipes are the caller's to drain.
pub fn wait_with_peak_rss(child: &mut Child) -> std::io::Result<(ExitStatus, u64)> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 only writes into the two locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; the pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok((
        ExitStatus::from_raw(status),
        u64::try_from(usage.ru_maxrss).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_holds_memory_reports_it() {
        // 200 MB written by Python: the peak must show it, and the output must come through.
        // (A zeroed `bytearray(n)` is calloc'ed and may stay untouched, so it can miss the RSS.)
        let (out, kb) = output_with_peak_rss(Command::new("python3").args([
            "-c",
            "b = b'x' * (200 * 1024 * 1024); print('held', len(b))",
        ]))
        .expect("python3 runs");
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "held 209715200"
        );
        assert!(kb > 200 * 1024, "peak {kb} kB");
        let (out, kb) = output_with_peak_rss(Command::new("true").arg("x")).unwrap();
        assert!(out.status.success() && kb < 50 * 1024, "peak {kb} kB");
    }
}
