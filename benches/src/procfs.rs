//! CPU time and resident memory of a process, read from Linux's /proc.

use std::fs;
use std::io;

/// Clock ticks per second of /proc's utime and stime (`sysconf(_SC_CLK_TCK)`).
///
/// USER_HZ is 100 on every Linux architecture Starling targets, and reading
/// it for real needs libc, which this crate avoids (`unsafe_code` is forbidden).
pub(crate) const TICKS_PER_SEC: f64 = 100.0;

/// Which process to read: a pid, or this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proc {
    /// `/proc/self`.
    This,
    /// `/proc/<pid>`.
    Pid(u32),
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Proc::This => format!("/proc/self/{file}"),
            Proc::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }

    /// utime + stime of every thread of the process, in clock ticks.
    pub(crate) fn cpu_ticks(self) -> io::Result<u64> {
        let path = self.path("stat");
        let text = fs::read_to_string(&path)?;
        parse_stat_cpu_ticks(&text).ok_or_else(|| malformed(&path))
    }

    /// Resident set size (VmRSS) in KiB.
    pub(crate) fn rss_kib(self) -> io::Result<u64> {
        let path = self.path("status");
        let text = fs::read_to_string(&path)?;
        parse_status_rss_kib(&text).ok_or_else(|| malformed(&path))
    }
}

fn malformed(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected format of {path}"),
    )
}

/// CPU time of the whole machine, in clock ticks summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MachineTicks {
    /// user + nice + system + irq + softirq + steal.
    pub(crate) busy: u64,
    /// Time the hypervisor gave to someone else.
    pub(crate) steal: u64,
}

/// The machine's CPU time so far, from /proc/stat.
pub(crate) fn machine_ticks() -> io::Result<MachineTicks> {
    let text = fs::read_to_string("/proc/stat")?;
    parse_machine_ticks(&text).ok_or_else(|| malformed("/proc/stat"))
}

/// The `cpu` line of /proc/stat: user nice system idle iowait irq softirq
/// steal guest guest_nice (guest time is already inside user and nice).
fn parse_machine_ticks(text: &str) -> Option<MachineTicks> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    if fields.len() < 4 {
        return None;
    }
    Some(MachineTicks {
        busy: field(0) + field(1) + field(2) + field(5) + field(6) + field(7),
        steal: field(7),
    })
}

/// utime + stime from the text of /proc/PID/stat.
fn parse_stat_cpu_ticks(text: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // ')' itself, so count fields from the last ')'. After it come field 3
    // (state) onwards; utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS (KiB) from the text of /proc/PID/status.
fn parse_status_rss_kib(text: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_utime_plus_stime_even_with_odd_command_names() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 \
                    731 269 0 0 20 0 3 0 12345 104857600 2560 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(1000));
    }

    #[test]
    fn truncated_stat_is_rejected() {
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2 3"), None);
    }

    #[test]
    fn status_rss_is_read_in_kib() {
        let status = "Name:\tstarling\nVmPeak:\t  999 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_kib(status), Some(20480));
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 9000 40 3 2 7 20 0\ncpu0 50 2 25 4500 20 1 1 3 10 0\n";
        let ticks = parse_machine_ticks(stat).expect("cpu line");
        assert_eq!(
            ticks,
            MachineTicks {
                busy: 167,
                steal: 7
            }
        );
        assert!(machine_ticks().is_ok());
    }

    #[test]
    fn this_process_can_be_read() {
        assert!(Proc::This.cpu_ticks().is_ok());
        assert!(Proc::This.rss_kib().expect("rss") > 0);
    }
}
