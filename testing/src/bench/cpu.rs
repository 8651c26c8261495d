//! CPU time and resident memory of a process on this machine, from
//! `/proc/<pid>/stat` and `/proc/<pid>/status`, so a scenario can report
//! broker CPU seconds per GB moved and how its memory grows over time.

use anyhow::Context;

/// User plus system CPU seconds the process (all its threads) has used so far.
pub fn process_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat(&stat, clock_ticks_per_second())
}

/// Resident set size in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_rss(&status)
}

fn parse_rss(status: &str) -> anyhow::Result<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).context("no VmRSS in status")?;
    let kb: u64 = line.trim().trim_end_matches("kB").trim().parse().context("VmRSS is not a number")?;
    Ok(kb * 1024)
}

fn clock_ticks_per_second() -> f64 {
    #[allow(unsafe_code)] // sysconf has no preconditions
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Fields 14 and 15 (utime, stime) count after the command name, which is
/// in parentheses and may itself contain spaces or parentheses.
fn parse_stat(stat: &str, ticks: f64) -> anyhow::Result<f64> {
    let after_comm = stat.rsplit_once(')').context("no command name in stat")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // after_comm starts at field 3 (state); utime is field 14.
    let field = |n: usize| -> anyhow::Result<u64> {
        fields.get(n - 3).context("stat too short")?.parse().context("stat field is not a number")
    };
    Ok((field(14)? + field(15)?) as f64 / ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_time_past_an_awkward_name() {
        let stat = "4242 (floe (wal) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert!((parse_stat(stat, 100.0).unwrap() - 3.0).abs() < 1e-9);
        assert!(parse_stat("4242 (floe) S 1", 100.0).is_err());
    }

    #[test]
    fn reads_resident_memory() {
        let status = "Name:\tfloe\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(parse_rss(status).unwrap(), 12345 * 1024);
        assert!(parse_rss("Name:\tfloe\n").is_err());
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn this_process_uses_some_cpu() {
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(process_seconds(std::process::id()).unwrap() > 0.0);
    }
}
