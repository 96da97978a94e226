//! The load a node reports with its registration.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a node carries now, for placing new meetings on the least loaded node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Meetings whose home is this node.
    pub meetings: u64,
    /// Open client connections (HTTP and WebSocket).
    pub connections: u64,
    /// The process's CPU use since the last report, in cores (1.0 = one core busy).
    pub cpu: f64,
}

/// CPU use between two readings of the process's CPU time.
#[derive(Debug)]
pub struct CpuMeter {
    last: Option<(Instant, Duration)>,
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuMeter {
    pub fn new() -> Self {
        Self {
            last: process_cpu_time().map(|cpu| (Instant::now(), cpu)),
        }
    }

    /// Cores used since the previous call (or since the meter was made); 0 when the
    /// system does not tell.
    pub fn sample(&mut self) -> f64 {
        let Some(cpu) = process_cpu_time() else {
            return 0.0;
        };
        let now = Instant::now();
        let cores = match self.last {
            Some((at, before)) => cores_between(before, cpu, now.saturating_duration_since(at)),
            None => 0.0,
        };
        self.last = Some((now, cpu));
        cores
    }
}

/// Cores used: CPU time spent over wall time elapsed.
pub fn cores_between(cpu_before: Duration, cpu_after: Duration, wall: Duration) -> f64 {
    if wall.is_zero() {
        return 0.0;
    }
    cpu_after.saturating_sub(cpu_before).as_secs_f64() / wall.as_secs_f64()
}

/// User plus system CPU time of this process so far.
fn process_cpu_time() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given, which points
    // at one; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage succeeded, so the struct is filled (it was zeroed before anyway).
    let usage = unsafe { usage.assume_init() };
    let time = |tv: libc::timeval| {
        Duration::from_secs(u64::try_from(tv.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(tv.tv_usec).unwrap_or(0))
    };
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_are_cpu_time_over_wall_time() {
        let s = Duration::from_secs;
        assert_eq!(cores_between(s(1), s(3), s(2)), 1.0);
        assert_eq!(cores_between(s(1), s(2), s(4)), 0.25);
        assert_eq!(cores_between(s(1), s(2), Duration::ZERO), 0.0);
        // A reading that went backwards (it cannot, but) counts as idle.
        assert_eq!(cores_between(s(3), s(1), s(1)), 0.0);
    }

    #[test]
    fn a_busy_loop_shows_in_the_meter() {
        let mut meter = CpuMeter::new();
        let start = Instant::now();
        let before = process_cpu_time().expect("getrusage works here");
        // Spin until this process has burnt 100 ms of CPU (however loaded the machine is,
        // bounded): the meter must report at least that much over the wall time it took.
        let mut x = 0u64;
        while process_cpu_time()
            .expect("getrusage")
            .saturating_sub(before)
            < Duration::from_millis(100)
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no CPU time in 20 s"
            );
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        let cores = meter.sample();
        let wall = start.elapsed().as_secs_f64();
        assert!(cores * wall >= 0.095, "{cores} cores over {wall} s");
        assert!(cores > 0.0);
    }
}
