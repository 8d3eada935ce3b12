//! How busy the whole machine was during a timed window, from `/proc/stat`.
//!
//! On a shared VM the same code gives very different tail latencies from one
//! hour to the next; recording the steal (time the hypervisor gave our vCPUs
//! to someone else) and the idle share with each figure makes that visible
//! instead of anecdotal.

use serde_json::{json, Value};

/// Cumulative jiffies of the `cpu` line (all CPUs together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    idle: u64,
    steal: u64,
    total: u64,
}

impl CpuSample {
    /// `None` where `/proc/stat` is missing or unreadable (not Linux).
    pub fn now() -> Option<CpuSample> {
        parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Shares of the machine's time since `self`, in percent.
    pub fn shares_until(&self, later: &CpuSample) -> Value {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        let pct = |a: u64, b: u64| (a.saturating_sub(b) as f64 * 1000.0 / total).round() / 10.0;
        let idle = pct(later.idle, self.idle);
        let steal = pct(later.steal, self.steal);
        json!({
            "busy_pct": ((100.0 - idle - steal) * 10.0).round() / 10.0,
            "idle_pct": idle,
            "steal_pct": steal,
        })
    }
}

/// The figures of a window that started at `start` and ends now, or `null`.
pub fn window(start: Option<CpuSample>) -> Value {
    match (start, CpuSample::now()) {
        (Some(a), Some(b)) => a.shares_until(&b),
        _ => Value::Null,
    }
}

/// CPU time (user + system) process `pid` has used, in clock ticks, from
/// `/proc/<pid>/stat`.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    process_ticks_of(&stat)
}

/// CPU time (user + system) of every running process named `name` (as
/// `/proc/<pid>/comm` gives it), in clock ticks: for Postgres, its
/// backends together. A process that exits between two readings takes its
/// ticks with it; the hub's pooled connections stay for the whole run.
pub fn ticks_of_processes_named(name: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            if comm.trim_end() != name {
                return None;
            }
            process_ticks_of(&std::fs::read_to_string(e.path().join("stat")).ok()?)
        })
        .sum()
}

/// Fields 14 and 15 (utime, stime) of a `/proc/<pid>/stat` line; the
/// command name (field 2) may hold spaces, so fields count from its `)`.
fn process_ticks_of(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after_name.split_whitespace().collect();
    let (utime, stime) = (
        f.get(11)?.parse::<u64>().ok()?,
        f.get(12)?.parse::<u64>().ok()?,
    );
    Some(utime + stime)
}

/// A process's share of one core over a window, in percent (100 = one core
/// fully), from two [`process_ticks`] readings `seconds` apart.
pub fn process_core_pct(before: Option<u64>, after: Option<u64>, seconds: f64) -> Value {
    match (before, after) {
        (Some(a), Some(b)) if seconds > 0.0 => {
            // Linux reports these in USER_HZ, 100 on every platform it runs on.
            let secs = b.saturating_sub(a) as f64 / 100.0;
            json!(((secs / seconds) * 1000.0).round() / 10.0)
        }
        _ => Value::Null,
    }
}

/// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`;
/// guest time is already counted in user, so it is left out of the total.
fn parse(stat: &str) -> Option<CpuSample> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if f.len() < 8 {
        return None;
    }
    Some(CpuSample {
        idle: f[3] + f[4],
        steal: f[7],
        total: f[..8].iter().sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_stat_line_gives_user_plus_system_ticks() {
        let line = "4242 (lad bench) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(process_ticks_of(line), Some(325));
        assert_eq!(
            process_core_pct(Some(100), Some(300), 2.0),
            serde_json::json!(100.0)
        );
    }

    #[test]
    fn shares_come_from_the_difference_of_two_samples() {
        let a = parse("cpu  100 0 100 700 0 0 0 100 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n").unwrap();
        // +1000 jiffies: 300 user, 100 system, 400 idle, 100 iowait, 100 steal.
        let b = parse("cpu  400 0 200 1100 100 0 0 200 50 0\n").unwrap();
        assert_eq!(
            a.shares_until(&b),
            json!({"busy_pct": 40.0, "idle_pct": 50.0, "steal_pct": 10.0})
        );
    }

    #[test]
    fn a_line_without_the_fields_is_no_sample() {
        assert_eq!(parse("cpu  1 2 3\n"), None);
        assert_eq!(parse("intr 5\n"), None);
        assert_eq!(parse("cpu  1 2 x 4 5 6 7 8\n"), None);
    }
}
